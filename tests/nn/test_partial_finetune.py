"""The backbone cut before its last stages: trunk + top is the model, and only the top trains."""

import numpy as np
import pytest
import timm
import torch

from hiercls import HierarchicalFusionClassifier
from hiercls.estimator.tile_dataset import TileDataset
from hiercls.features.frozen import N_VIEWS, frozen_view_features, symmetric_views
from hiercls.nn.backbones import create_backbone
from hiercls.nn.fusion import FusionNet
from hiercls.nn.partial_finetune import (BackboneTrunk, check_finetune_stages, top_features,
                                         top_modules)

from ..conftest import TINY_CLASSIFIER


def _tiles(model, X):
    """The decoded tiles as the fitted classifier prepares them for its backbone."""
    config = model.data_config_
    return TileDataset(X, use_radiomics=False, image_size=32, mean=config["mean"],
                       std=config["std"], interpolation=config["interpolation"])


@pytest.mark.parametrize("name", ["test_efficientnet", "mobilenetv3_small_050"])
def test_trunk_then_top_is_the_model_at_every_cut(name):
    torch.manual_seed(0)
    model = create_backbone(name).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        whole = model(images)
        for stages in range(1, len(model.blocks)):
            maps = BackboneTrunk(model, stages)(images)
            assert maps.dim() == 4
            torch.testing.assert_close(top_features(model, maps, stages), whole, rtol=0, atol=1e-6)


def test_the_top_is_the_last_stages_and_the_head():
    model = create_backbone("test_efficientnet")
    modules = top_modules(model, 2)
    assert modules[:2] == list(model.blocks[-2:])
    assert model.conv_head in modules and model.bn2 in modules
    assert not any(m is model.blocks[0] for m in modules)


@pytest.mark.parametrize("stages, error, match", [
    (0, ValueError, "between 1 and 4"), (5, ValueError, "between 1 and 4"),
    (True, TypeError, "int"), (1.0, TypeError, "int")])
def test_bad_cuts_are_named(stages, error, match):
    with pytest.raises(error, match=match):
        check_finetune_stages(create_backbone("test_efficientnet"), stages)


def test_other_families_are_refused_by_name():
    with pytest.raises(ValueError, match="EfficientNet or MobileNetV3.*ResNet is not one"):
        BackboneTrunk(timm.create_model("resnet18", num_classes=0), 1)
    with pytest.raises(ValueError, match="backbone_stages"):
        BackboneTrunk(create_backbone("test_efficientnet", stages=2), 1)


def test_fusion_net_trains_only_the_top_of_a_frozen_backbone():
    net = FusionNet("test_efficientnet", n_radiomic_features=3, embed_dim=8,
                    freeze_backbone=True, finetune_stages=1)
    backbone = net.image_encoder.backbone
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    expected = {name for name, _ in backbone.named_parameters()
                if name.startswith((f"blocks.{len(backbone.blocks) - 1}.", "conv_head.", "bn2."))}
    assert trainable == expected and trainable
    # Its batch norms keep the pretrained statistics in training too.
    net.train()
    assert not any(m.training for m in backbone.modules())
    with pytest.raises(ValueError, match="needs freeze_backbone=True"):
        FusionNet("test_efficientnet", n_radiomic_features=3, embed_dim=8, finetune_stages=1)


def test_cached_maps_predict_as_the_views_through_the_whole_backbone(synthetic):
    """Prediction from the trunk's cached maps of 8 views = the mean of the 8 views' pooled
    features of the whole backbone, projected: the top runs on each view, then averages."""
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "freeze_backbone": True,
                                            "finetune_stages": 1, "cache": None})
    model.fit(X, y, groups=groups)
    net = model.module_.eval()
    dataset = model.get_dataset(X)
    maps = dataset.image_features
    assert maps.dim() == 5 and maps.shape[:2] == (len(X), N_VIEWS)
    tiles = _tiles(model, X)
    images = torch.stack([tiles.image_tensor(i) for i in range(4)])
    with torch.no_grad():
        pooled = net.image_encoder.backbone(symmetric_views(images).flatten(0, 1))
        expected = net.image_encoder.projection(pooled.reshape(4, N_VIEWS, -1).mean(dim=1))
        got = net._cached_embedding(maps[:4])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_finetune_stages_trains_the_last_stage_only_and_is_seeded(synthetic, tmp_path):
    X, y, groups = synthetic
    params = {**TINY_CLASSIFIER, "freeze_backbone": True, "finetune_stages": 1, "cache": None,
              "optimizer__param_groups": [("image_encoder.backbone.*", {"lr": 1e-3})]}
    model = HierarchicalFusionClassifier(**params)
    before = {k: v.clone() for k, v in model.initialize().module_.state_dict().items()}
    model.fit(X, y, groups=groups)
    after = model.module_.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    last = len(model.module_.image_encoder.backbone.blocks) - 1
    backbone_changed = {k for k in changed if k.startswith("image_encoder.backbone.")}
    assert backbone_changed and all(
        k.startswith((f"image_encoder.backbone.blocks.{last}.", "image_encoder.backbone.conv_head.",
                      "image_encoder.backbone.bn2."))
        and "running_" not in k for k in backbone_changed)
    assert [group["lr"] for group in model.optimizer_.param_groups] == [1e-3, 1e-4]
    again = HierarchicalFusionClassifier(**params).fit(X, y, groups=groups)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))


def test_trunk_maps_are_cached_under_their_own_key(synthetic, tmp_path):
    X, y, groups = synthetic
    weights = tmp_path / "w.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), weights)
    params = {**TINY_CLASSIFIER, "pretrained": str(weights), "freeze_backbone": True,
              "cache": tmp_path / "cache"}
    HierarchicalFusionClassifier(**params).fit(X, y)
    model = HierarchicalFusionClassifier(**params, finetune_stages=1).fit(X, y)
    folders = {p.parent.parent.name for p in (tmp_path / "cache").rglob("embeddings/**/*.npy")}
    assert len(folders) == 2  # pooled features and trunk maps side by side
    trunk = model.module_.image_encoder.cached_part()
    cached = frozen_view_features(trunk, _tiles(model, X), cache=None)
    np.testing.assert_allclose(model.get_dataset(X).image_features.numpy(), cached, atol=1e-6)


@pytest.mark.parametrize("params, match", [
    ({"finetune_stages": -1}, "finetune_stages must be an int >= 0"),
    ({"finetune_stages": True}, "finetune_stages must be an int >= 0"),
    ({"finetune_stages": 1}, "needs freeze_backbone=True"),
    ({"finetune_stages": 1, "freeze_backbone": True, "backbone_stages": 2}, "backbone_stages"),
])
def test_bad_finetune_stages_are_named(synthetic, params, match):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match=match):
        HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, **params}).fit(X, y)


def test_batch_norm_statistics_of_the_top_never_change(synthetic):
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "freeze_backbone": True,
                                            "finetune_stages": 1, "cache": None})
    before = {k: v.clone() for k, v in model.initialize().module_.state_dict().items()
              if "running_" in k}
    model.fit(X, y, groups=groups)
    after = model.module_.state_dict()
    assert before and all(torch.equal(before[k], after[k]) for k in before)
