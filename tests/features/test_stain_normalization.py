"""StainNormalizer: the training tiles' stain, learned in fit and imposed in transform."""

import warnings

import numpy as np
import pandas as pd
import pytest
from skimage.color import rgb2lab
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import hiercls
from hiercls import StainNormalizer, load_model, save_model
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.features.stain_normalization import StainNormalizationWarning

from ..conftest import TINY_CLASSIFIER

#: Unit optical-density vectors (hematoxylin, eosin): the usual H&E ones (Ruifrok and
#: Johnston) and a bluer, duller "other laboratory" stain.
STAIN_A = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
STAIN_B = np.array([[0.30, 0.85, 0.43], [0.25, 0.90, 0.35]])
STAIN_A /= np.linalg.norm(STAIN_A, axis=1, keepdims=True)
STAIN_B /= np.linalg.norm(STAIN_B, axis=1, keepdims=True)


def concentrations(seed, size=48):
    """Hematoxylin nuclei over an eosin stroma, (size, size, 2) stain amounts."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    h = np.zeros((size, size))
    for _ in range(8):
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(2, 5)
        h += rng.uniform(0.6, 1.2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    eosin = 0.3 + 0.4 * rng.random((size, size))
    return np.stack([h + 0.05 * rng.random((size, size)), eosin], -1)


def render(amounts, stains, strength=1.0):
    """Beer-Lambert under torchstain's light intensity (240), as uint8 RGB."""
    rgb = 240 * np.exp(-(amounts * strength) @ stains) - 1
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def frame(tiles, index=None):
    return pd.DataFrame({"image": list(tiles), "mpp": 2.0}, index=index)


@pytest.fixture(scope="module")
def training():
    return frame(render(concentrations(seed), STAIN_A) for seed in range(6))


def cosines(matrix, stains):
    """Cosine of each fitted column with each given stain vector (row)."""
    matrix = matrix / np.linalg.norm(matrix, axis=0, keepdims=True)
    return (matrix.T * stains).sum(1)


def test_macenko_moves_a_differently_stained_tile_toward_the_training_stain(training):
    amounts = concentrations(99)
    other = frame([render(amounts, STAIN_B, strength=1.3)])
    reference = render(amounts, STAIN_A)  # the same tissue, stained as the training tiles
    stain = StainNormalizer("macenko").fit(training)
    assert stain.n_fit_tiles_ == 6 and stain.stain_matrix_.shape == (3, 2)
    # Learned from the training tiles: their stain (Macenko's estimate of it, which
    # mixtures bias a little), not the other laboratory's, which a fit on it finds.
    own = StainNormalizer("macenko").fit(other).stain_matrix_
    assert (cosines(own, STAIN_B) > 0.99).all()
    assert (cosines(stain.stain_matrix_, STAIN_A) > 0.96).all()
    assert cosines(stain.stain_matrix_, STAIN_A).min() > cosines(own, STAIN_A).max()
    learned = stain.stain_matrix_.copy(), stain.max_concentrations_.copy()
    out = stain.transform(other)
    # transform learns nothing from the tiles it normalizes.
    np.testing.assert_array_equal(stain.stain_matrix_, learned[0])
    np.testing.assert_array_equal(stain.max_concentrations_, learned[1])
    tile = out["image"].iloc[0]
    assert tile.dtype == np.uint8 and tile.shape == reference.shape
    # Closer to the training-stained rendering of the same tissue than before.
    before = np.abs(other["image"].iloc[0].astype(float) - reference).mean()
    after = np.abs(tile.astype(float) - reference).mean()
    assert after < 0.85 * before
    # And the stain its pixels show now is the training one, not B.
    shown = StainNormalizer("macenko").fit(out).stain_matrix_
    assert (cosines(shown / np.linalg.norm(shown, axis=0), stain.stain_matrix_.T) > 0.99).all()
    np.testing.assert_array_equal(out["mpp"], other["mpp"])


def test_reinhard_gives_the_tile_the_training_lab_statistics(training):
    stain = StainNormalizer("reinhard").fit(training)
    # The target is that of all the training pixels pooled (checked with scikit-image).
    pooled = rgb2lab(np.concatenate([t.reshape(-1, 3) for t in training["image"]])[None])
    np.testing.assert_allclose(stain.target_means_, pooled.reshape(-1, 3).mean(0), atol=0.05)
    np.testing.assert_allclose(stain.target_stds_, pooled.reshape(-1, 3).std(0), atol=0.05)
    other = frame([render(concentrations(99), STAIN_B, strength=1.3)])
    lab_in = rgb2lab(other["image"].iloc[0]).reshape(-1, 3)
    assert np.abs(lab_in.mean(0) - stain.target_means_).max() > 5  # far off before
    lab = rgb2lab(stain.transform(other)["image"].iloc[0]).reshape(-1, 3)
    # Within the rounding to uint8 (about a quarter of a unit of L).
    np.testing.assert_allclose(lab.mean(0), stain.target_means_, atol=0.5)
    np.testing.assert_allclose(lab.std(0), stain.target_stds_, rtol=0.02)


def test_method_none_is_the_identity_and_reads_no_tile():
    # Paths that do not exist: reading any of them would raise.
    X = pd.DataFrame({"image": ["/nowhere/a.png", "/nowhere/b.png"], "mpp": [2.0, 2.0]})
    stain = StainNormalizer(method=None).fit(X)
    assert stain.n_fit_tiles_ == 0 and not hasattr(stain, "stain_matrix_")
    assert stain.transform(X) is X
    assert list(stain.get_feature_names_out()) == ["image", "mpp"]


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_blank_tile_passes_unchanged_with_a_warning_naming_it(training, method):
    blank = np.full((48, 48, 3), 255, dtype=np.uint8)
    tiles = [training["image"].iloc[0], blank, training["image"].iloc[1]]
    X = frame(tiles, index=["first", "white-glass", "third"])
    stain = StainNormalizer(method).fit(training)
    with pytest.warns(StainNormalizationWarning, match=r"1 of 3 tile.*'white-glass'") as record:
        out = stain.transform(X)
    assert len(record) == 1
    assert "'first'" not in str(record[0].message)
    np.testing.assert_array_equal(out["image"].loc["white-glass"], blank)
    assert out["image"].loc["white-glass"].dtype == np.uint8
    assert not np.array_equal(out["image"].loc["first"], tiles[0])  # the others normalized
    assert out.index.tolist() == X.index.tolist()


def test_blank_training_tiles_are_a_clear_error_at_fit():
    blank = frame([np.full((16, 16, 3), 255, dtype=np.uint8)] * 3)
    with pytest.raises(ValueError, match="cannot learn a stain from the 3 sampled training"):
        StainNormalizer("macenko").fit(blank)


def test_fit_samples_n_fit_tiles_deterministically():
    X, _, _ = make_synthetic_tiles(n_tiles=30, n_patients=3, size=32, random_state=2)
    first = StainNormalizer("macenko", n_fit_tiles=5, random_state=0).fit(X)
    again = StainNormalizer("macenko", n_fit_tiles=5, random_state=0).fit(X)
    other = StainNormalizer("macenko", n_fit_tiles=5, random_state=1).fit(X)
    assert first.n_fit_tiles_ == 5
    np.testing.assert_array_equal(first.stain_matrix_, again.stain_matrix_)
    np.testing.assert_array_equal(first.max_concentrations_, again.max_concentrations_)
    assert not np.array_equal(first.stain_matrix_, other.stain_matrix_)  # another sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StainNormalizationWarning)  # pale synthetic tiles
        a, b = first.transform(X), again.transform(X)
    for x, z in zip(a["image"], b["image"]):
        np.testing.assert_array_equal(x, z)


def test_clone_and_get_params_give_an_equivalent_unfitted_normalizer(training):
    stain = StainNormalizer("reinhard", n_fit_tiles=5, random_state=3, verbose=1)
    assert stain.get_params() == {"method": "reinhard", "n_fit_tiles": 5, "random_state": 3,
                                  "verbose": 1}
    stain.fit(training)
    copy = clone(stain)
    assert copy.get_params() == stain.get_params() and not hasattr(copy, "n_fit_tiles_")
    with pytest.raises(NotFittedError):
        copy.transform(training)
    copy.set_params(**stain.get_params()).fit(training)
    np.testing.assert_array_equal(copy.target_means_, stain.target_means_)


@pytest.mark.parametrize("params, message", [
    ({"method": "vahadane"},
     r"method must be one of \['macenko', 'reinhard', None\]; got 'vahadane'"),
    ({"method": "Macenko"}, r"method must be one of .*; got 'Macenko'"),
    ({"n_fit_tiles": 0}, r"n_fit_tiles must be a positive whole number of tiles; got 0"),
])
def test_bad_parameters_are_a_clear_error_at_fit(training, params, message):
    stain = StainNormalizer(**params)  # stored verbatim, checked in fit
    with pytest.raises(ValueError, match=message):
        stain.fit(training)


def test_transform_checks_the_columns_and_set_output_keeps_the_frame(training):
    stain = StainNormalizer("reinhard").fit(training)
    with pytest.raises(ValueError, match=r"X has columns \['image'\], but StainNormalizer "
                                         r"was fitted on \['image', 'mpp'\]"):
        stain.transform(training[["image"]])
    X = training.set_axis([f"t{k}" for k in range(len(training))])
    out = clone(stain).set_output(transform="pandas").fit(X).transform(X)
    assert out.index.tolist() == X.index.tolist() and list(out.columns) == ["image", "mpp"]
    assert all(isinstance(t, np.ndarray) and t.dtype == np.uint8 for t in out["image"])


def test_verbose_shows_a_progress_bar_and_zero_silences_it(training, capsys):
    StainNormalizer("reinhard", verbose=1).fit(training).transform(training)
    assert "stain" in capsys.readouterr().err
    StainNormalizer("reinhard", verbose=0).fit(training).transform(training)
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=1)


def tiny(**params):
    return hiercls.make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "max_epochs": 1},
                                        radiomics__mask="full", radiomics__cache=None, **params)


@pytest.mark.filterwarnings("ignore::hiercls.features.stain_normalization.StainNormalizationWarning")
@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_pipeline_with_stain_method_fits_predicts_and_survives_save_and_load(
        synthetic, method, tmp_path):
    X, y, groups = synthetic
    train = groups != "patient-3"
    pipe = tiny(stain__method=method, stain__random_state=0)
    assert pipe.get_params()["stain__method"] == method
    pipe.fit(X[train], y[train])
    step = pipe.named_steps["stain"]
    # The target is the training tiles' alone.
    alone = StainNormalizer(method, random_state=0).fit(X[train])
    names = ("stain_matrix_", "max_concentrations_") if method == "macenko" else (
        "target_means_", "target_stds_")
    for name in names:
        np.testing.assert_array_equal(getattr(step, name), getattr(alone, name))
    proba = pipe.predict_proba(X[~train])
    assert proba.shape == (int((~train).sum()), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    # The radiomics see the normalized tiles, not the raw ones.
    off = pipe[2:-1].transform(X[~train])
    on = pipe[1:-1].transform(X[~train])
    assert not np.allclose(on["firstorder_Mean"], off["firstorder_Mean"])

    save_model(pipe, tmp_path / "stained.hiercls")
    restored = load_model(tmp_path / "stained.hiercls")
    back = restored.named_steps["stain"]
    assert back.get_params() == step.get_params()
    for name in (*names, "feature_names_in_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(step, name))
    assert back.n_fit_tiles_ == step.n_fit_tiles_ == int(train.sum())
    assert np.array_equal(restored.predict_proba(X[~train]), proba)


def test_stain_method_none_in_the_pipeline_leaves_predictions_unchanged(synthetic):
    X, y, _ = synthetic
    from sklearn.pipeline import Pipeline

    pipe = tiny().fit(X, y)
    assert pipe.named_steps["stain"].method is None
    without = Pipeline([step for step in tiny().steps if step[0] != "stain"]).fit(X, y)
    assert np.array_equal(pipe.predict_proba(X), without.predict_proba(X))


@pytest.mark.parametrize("method", ["macenko", "reinhard", None])
def test_fitted_state_rebuilds_an_equal_normalizer(training, method):
    fitted = StainNormalizer(method=method, random_state=0).fit(training)
    state = fitted.get_fitted_state()
    assert state["n_fit_tiles_"] == fitted.n_fit_tiles_
    restored = StainNormalizer(method=method).set_fitted_state(state)
    pd.testing.assert_frame_equal(restored.transform(training), fitted.transform(training))


def test_fitted_state_is_checked():
    target = {"feature_names_in_": ["image"], "n_fit_tiles_": 3,
              "stain_matrix_": np.full((2, 3), 0.5), "max_concentrations_": np.ones(2)}
    with pytest.raises(ValueError, match=r"stain_matrix_ must be finite floats of shape \(3, 2\)"):
        StainNormalizer(method="macenko").set_fitted_state(target)
    with pytest.raises(ValueError, match="n_fit_tiles_ must be a whole number >= 0"):
        StainNormalizer(method=None).set_fitted_state({**target, "n_fit_tiles_": True})
