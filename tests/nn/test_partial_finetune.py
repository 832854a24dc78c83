"""The backbone cut before its last stages: trunk + top is the model, and only the top trains."""

import pickle

import numpy as np
import pytest
import timm
import torch

import hiercls.features.frozen as frozen_features
from hiercls import (
    HierarchicalFusionClassifier,
    load_model,
    make_fusion_pipeline,
    save_model,
)
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.estimator.tile_dataset import TileDataset
from hiercls.features.frozen import N_VIEWS, frozen_view_features, symmetric_views
from hiercls.nn.backbones import create_backbone
from hiercls.nn.fusion import FusionNet, class_probabilities
from hiercls.nn.partial_finetune import (
    BackboneTrunk,
    check_finetune_stages,
    top_features,
    top_modules,
)

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


@pytest.mark.parametrize("name, family", [("resnet18", "ResNet"),
                                          # Same attribute names, another forward pass.
                                          ("ghostnet_050", "GhostNet")])
def test_other_families_are_refused_by_name(name, family):
    with pytest.raises(ValueError, match=f"EfficientNet or MobileNetV3.*{family} is not one"):
        BackboneTrunk(timm.create_model(name, num_classes=0), 1)


def test_the_wrong_features_for_a_fine_tuning_encoder_are_named():
    net = FusionNet("test_efficientnet", n_radiomic_features=3, embed_dim=8,
                    freeze_backbone=True, finetune_stages=1).eval()
    with pytest.raises(ValueError, match=r"trunk's maps \(n, C, h, w\).*got shape \(2, 8, 64\)"):
        net(image_features=torch.zeros(2, 8, 64), radiomics=torch.zeros(2, 3))
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


def test_finetune_stages_trains_the_last_stage_only_and_is_seeded(synthetic):
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


def test_trunk_maps_are_cached_under_their_own_key(synthetic, tmp_path, monkeypatch):
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

    # A second fit reads the maps from the cache: computing views is made impossible.
    def refuse(images):
        raise AssertionError("trunk maps were recomputed although cached")

    monkeypatch.setattr(frozen_features, "symmetric_views", refuse)
    again = HierarchicalFusionClassifier(**params, finetune_stages=1).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))
    with pytest.raises(AssertionError, match="recomputed"):
        HierarchicalFusionClassifier(**{**params, "cache": tmp_path / "empty"},
                                     finetune_stages=1).fit(X, y)


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


@pytest.fixture(scope="module")
def fine_tuned(synthetic):
    X, y, groups = synthetic
    params = {**TINY_CLASSIFIER, "freeze_backbone": True, "finetune_stages": 1, "cache": None}
    return HierarchicalFusionClassifier(**params).fit(X, y, groups=groups)


def test_fewer_predict_views_average_the_tops_of_those_views(synthetic, fine_tuned):
    X, y, groups = synthetic
    maps = fine_tuned.get_dataset(X).image_features
    one = clone_params(fine_tuned, predict_views=1).predict_proba(X)
    net = fine_tuned.module_.eval()
    with torch.no_grad():
        logits, _ = net(image_features=maps[:, 0],
                        radiomics=fine_tuned.get_dataset(X).radiomics)
    np.testing.assert_allclose(one, class_probabilities(logits).numpy(), atol=1e-6)
    assert not np.allclose(one, fine_tuned.predict_proba(X))


def clone_params(model, **params):
    """The fitted model with some parameters set (on a copy)."""
    return pickle.loads(pickle.dumps(model)).set_params(**params)


def test_a_fine_tuned_model_round_trips_through_files(synthetic, fine_tuned, tmp_path):
    X, y, groups = synthetic
    expected = fine_tuned.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fine_tuned)).predict_proba(X), expected)
    tiles, labels, patients = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    pipe = make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "freeze_backbone": True,
                                                  "finetune_stages": 1, "cache": None},
                                radiomics__mask="full", radiomics__cache=None)
    pipe.fit(tiles, labels, classifier__groups=patients)
    save_model(pipe, tmp_path / "m.hiercls")
    restored = load_model(tmp_path / "m.hiercls")
    assert restored.named_steps["classifier"].finetune_stages == 1
    np.testing.assert_array_equal(restored.predict_proba(tiles), pipe.predict_proba(tiles))


def test_encoders_pickled_before_the_parameter_still_predict(synthetic):
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "freeze_backbone": True,
                                            "cache": None}).fit(X, y, groups=groups)
    # What an earlier release pickled: no finetune_stages anywhere on the encoder.
    assert "finetune_stages" not in vars(model.module_.image_encoder)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X),
                                  model.predict_proba(X))
