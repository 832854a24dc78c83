import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import hiercls
from hiercls import HierarchicalFusionClassifier, RadiomicsTransformer, load_model, save_model
from hiercls.estimator.pipeline import make_radiomics_scaler
from hiercls.features.radiomics.fast_backend import extract_fast
from hiercls.features.radiomics.names import FEATURE_NAMES
from hiercls.features.radiomics.pyradiomics_backend import extract_pyradiomics
from hiercls.features.resolution import DEFAULT_RESOLUTION, TileResampler, TileSizeWarning, tcia_mpp
from hiercls.slides import model_resolution

from ..conftest import TINY_CLASSIFIER


@pytest.fixture(scope="module")
def tiles():
    return hiercls.datasets.make_synthetic_tiles(n_tiles=24, n_patients=2, size=32, random_state=3)


def test_resampler_learns_resolution_and_resamples_only_declared_other_mpp():
    rng = np.random.default_rng(0)
    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    step = TileResampler().fit(pd.DataFrame({"image": small, "mpp": [2.0, 2.0, 4.0]}))
    assert step.training_resolution_ == (2.0, 32) and step.mpp_declared_
    big = np.kron(small[0], np.ones((2, 2, 1), dtype=np.uint8))
    X = pd.DataFrame({"image": [small[1], big], "mpp": [2.0, 1.0]}, index=[7, 9])
    out = step.transform(X)
    assert out["image"].iloc[0] is small[1]  # untouched, the same object
    assert out["image"].iloc[1].shape == (32, 32, 3)
    assert np.abs(out["image"].iloc[1].astype(int) - small[0]).mean() < 40
    assert out["mpp"].tolist() == [2.0, 2.0] and list(out.index) == [7, 9]
    assert list(step.get_feature_names_out()) == ["image", "mpp"]


def test_resampler_without_declaration_passes_frame_and_warns_once_on_other_sizes():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"image": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)] * 2})
    step = TileResampler().fit(X)
    assert step.training_resolution_ == (DEFAULT_RESOLUTION[0], 32) and not step.mpp_declared_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert step.transform(X) is X
    odd = pd.DataFrame({"image": [np.zeros((64, 64, 3), np.uint8)] * 3 + [X["image"][0]]})
    with pytest.warns(TileSizeWarning, match=r"3 of 4 tile\(s\).*\[64\] px.*32 px") as record:
        assert step.transform(odd) is odd
    assert len(record) == 1
    # Declared at the training mpp: no warning, the column dropped (not seen in fit).
    declared = step.transform(X.assign(mpp=2.0))
    assert list(declared.columns) == ["image"]
    X.attrs["mpp"] = 1.0
    assert TileResampler().fit(X).training_resolution_ == (1.0, 32)


def test_resampler_errors_name_the_input():
    X = pd.DataFrame({"image": [np.zeros((8, 8, 3), np.uint8)], "mpp": [-1.0]})
    with pytest.raises(ValueError, match=r"X\['mpp'\] must hold positive"):
        TileResampler().fit(X)
    with pytest.raises(ValueError, match="mpp must be a positive number"):
        TileResampler(mpp=0).fit(X.drop(columns="mpp"))
    step = TileResampler().fit(X.assign(mpp=1.0))
    with pytest.raises(ValueError, match="fitted on"):
        step.transform(X.assign(other=1))


def test_tcia_mpp_from_side():
    assert tcia_mpp(1024) == 1.0 and tcia_mpp(512) == 2.0 == DEFAULT_RESOLUTION[0]


@pytest.mark.parametrize("spacing", [0.5, 2.0, 3.7])
def test_fast_backend_agrees_with_pyradiomics_at_non_unit_spacing(spacing):
    rng = np.random.default_rng(5)
    channel = rng.uniform(0, 255, (40, 50))
    region = np.zeros((40, 50), bool)
    region[5:30, 8:45] = True
    region[10:14, 20:25] = False
    fast = extract_fast(channel, region, spacing=spacing)
    reference = extract_pyradiomics(channel, region, spacing=spacing)
    np.testing.assert_allclose(fast, reference, rtol=1e-9, atol=1e-12)
    unit = extract_fast(channel, region)
    changed = {name for name, a, b in zip(FEATURE_NAMES, fast, unit) if a != b}
    assert "shape2D_Perimeter" in changed and "firstorder_TotalEnergy" in changed
    assert "shape2D_Sphericity" not in changed and "firstorder_Mean" not in changed


def test_radiomics_uses_declared_mpp_as_spacing():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"image": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]})
    step = RadiomicsTransformer(mask="full", cache=None)
    plain = step.fit_transform(X)
    spaced = step.fit_transform(X.assign(mpp=2.0))
    assert spaced["shape2D_PixelSurface"].iloc[0] == 4 * plain["shape2D_PixelSurface"].iloc[0]
    assert spaced["firstorder_Mean"].iloc[0] == plain["firstorder_Mean"].iloc[0]


def test_four_step_pipeline_predicts_bit_identically_to_the_three_step_one(tiles):
    X, y, _ = tiles
    params = {**TINY_CLASSIFIER, "max_epochs": 1}
    new = hiercls.make_fusion_pipeline(preset="none", **params, radiomics__mask="full", radiomics__cache=None)
    old = Pipeline([("radiomics", RadiomicsTransformer(mask="full", cache=None)),
                    ("scale", make_radiomics_scaler()),
                    ("classifier", HierarchicalFusionClassifier(**params))])
    new.fit(X, y)
    old.fit(X, y)
    expected = old.predict_proba(X)
    assert np.array_equal(new.predict_proba(X), expected)
    # Declared at the training resolution: the same again.
    assert np.array_equal(new.predict_proba(X.assign(mpp=DEFAULT_RESOLUTION[0])), expected)
    assert model_resolution(new) == (DEFAULT_RESOLUTION[0], 32)


def test_declared_twice_resolution_is_resampled_to_the_training_one(tiles):
    X, y, _ = tiles
    pipe = hiercls.make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "max_epochs": 1},
                                        radiomics__mask="full", radiomics__cache=None)
    pipe.fit(X.assign(mpp=2.0), y)
    big = X.assign(image=[np.kron(t, np.ones((2, 2, 1), dtype=np.uint8)) for t in X["image"]],
                   mpp=1.0)
    # What the model sees: tiles of the training side, features back at the training ones
    # (a pipeline without the resolution step puts them far off).
    assert all(t.shape == (32, 32, 3) for t in pipe[0].transform(big)["image"])
    train = pipe[:-1].transform(X.assign(mpp=2.0))
    columns = [c for c in train.columns if c.startswith(("firstorder", "shape2D", "gl"))]
    assert len(columns) > 20
    train = train[columns].to_numpy(float)
    declared = pipe[:-1].transform(big)[columns].to_numpy(float)
    skipped = pipe[1:-1].transform(big)[columns].to_numpy(float)
    assert np.abs(declared - train).max() < 1.0 < 10.0 < np.abs(skipped - train).max()
    at_train = pipe.predict_proba(X.assign(mpp=2.0))
    resampled = pipe.predict_proba(big)
    assert (resampled.argmax(1) == at_train.argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(resampled, at_train, atol=0.1)


def test_resolution_step_survives_save_and_load(tiles, tmp_path):
    X, y, _ = tiles
    pipe = hiercls.make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "max_epochs": 1},
                                        radiomics__mask="full", radiomics__cache=None,
                                        resolution__mpp=0.5)
    pipe.fit(X, y)
    save_model(pipe, tmp_path / "m.hiercls")
    restored = load_model(tmp_path / "m.hiercls")
    step = restored.named_steps["resolution"]
    assert step.training_resolution_ == (0.5, 32) and step.mpp_declared_ is False
    assert step.get_params() == pipe.named_steps["resolution"].get_params()
    assert list(step.feature_names_in_) == list(X.columns)
    assert np.array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    assert model_resolution(restored) == (0.5, 32)


@pytest.mark.filterwarnings("ignore::hiercls.features.resolution.TileSizeWarning")
def test_real_tiles_at_twice_the_resolution_declared_agree(real_data_dir):
    from PIL import Image

    from hiercls.data.datasets import load_osteosarcoma_ut
    from hiercls.data.images import read_tile

    X, y, _ = load_osteosarcoma_ut(real_data_dir, subsample=6, random_state=0)
    X = X[["image"]]
    pipe = hiercls.make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "image_size": 64, "max_epochs": 3},
                                        radiomics__mask="tissue", radiomics__cache=None).fit(X, y)
    assert model_resolution(pipe) == (2.0, 512)
    big = pd.DataFrame({"image": [np.asarray(Image.fromarray(read_tile(t)).resize(
        (1024, 1024), Image.Resampling.LANCZOS)) for t in X["image"]], "mpp": 1.0},
        index=X.index)
    at_train, twice = pipe.predict_proba(X), pipe.predict_proba(big)
    assert (twice.argmax(1) == at_train.argmax(1)).mean() >= 0.9
    # Undeclared, the same 1024 px tiles warn once and are taken as they are.
    with pytest.warns(TileSizeWarning, match=r"24 of 24 tile\(s\).*\[1024\] px.*512 px"):
        undeclared = pipe.predict_proba(big[["image"]])
    # What moves the model: the standardized shape features, counted in pixels, are 4x
    # (areas) off when undeclared and back in place when declared and resampled.
    column = "shape2D_PixelSurface"
    features = {name: pipe[:-1].transform(frame)[column].to_numpy()
                for name, frame in (("train", X), ("declared", big), ("undeclared", big[["image"]]))}
    assert np.abs(features["declared"] - features["train"]).max() < 0.1
    assert np.abs(features["undeclared"] - features["train"]).min() > 1.0
    assert np.abs(twice - at_train).max() < np.abs(undeclared - at_train).max()


def test_resample_tile_to_a_target_size():
    from hiercls.features.resolution import resample_tile

    rng = np.random.default_rng(4)
    tile = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    out = resample_tile(tile, size=32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    square = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # The size form resamples exactly as the factor form does.
    assert np.array_equal(resample_tile(square, size=32), resample_tile(square, 0.5))
    assert np.array_equal(resample_tile(square, size=64), square)
    with pytest.raises(TypeError, match="either factor or size"):
        resample_tile(square, 0.5, size=32)
    with pytest.raises(ValueError, match="size must be a positive"):
        resample_tile(square, size=0)


def _kron(tile, k=2):
    return np.kron(tile, np.ones((k, k, 1), dtype=np.uint8))


def test_transform_reads_the_frames_attrs_mpp_like_fit():
    rng = np.random.default_rng(6)
    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    train = pd.DataFrame({"image": small})
    train.attrs["mpp"] = 2.0  # as load_osteosarcoma_ut declares its 512 px copies
    step = TileResampler().fit(train)
    assert step.training_resolution_ == (2.0, 32) and step.resolution_known_
    assert step.transform(train) is train
    big = pd.DataFrame({"image": [_kron(t) for t in small]})
    big.attrs["mpp"] = 1.0  # the 1024 px originals, as the loader declares them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = step.transform(big[["image"]])  # attrs survive column selection
    assert list(out.columns) == ["image"]
    assert all(tile.shape == (32, 32, 3) for tile in out["image"])
    assert np.abs(out["image"].iloc[0].astype(int) - small[0]).mean() < 40


def test_model_of_unknown_resolution_passes_declared_tiles_unchanged_and_warns():
    from hiercls.features.resolution import ResolutionUnknownWarning

    rng = np.random.default_rng(7)
    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    step = TileResampler().fit(pd.DataFrame({"image": small}))
    assert not step.resolution_known_
    sharper = pd.DataFrame({"image": small, "mpp": 0.5})
    with pytest.warns(ResolutionUnknownWarning, match="not resampled.*--mpp") as record:
        out = step.transform(sharper)
    assert len([w for w in record if w.category is ResolutionUnknownWarning]) == 1
    assert [t is s for t, s in zip(out["image"], small)] == [True, True]
    assert list(out.columns) == ["image"]
    # Told its resolution, the same model resamples them.
    known = TileResampler(mpp=2.0).fit(pd.DataFrame({"image": small}))
    assert known.resolution_known_
    with pytest.warns(TileSizeWarning, match="declared tile"):
        assert known.transform(sharper)["image"].iloc[0].shape == (8, 8, 3)


def test_declared_tiles_of_another_field_of_view_warn_after_resampling():
    rng = np.random.default_rng(8)
    step = TileResampler().fit(pd.DataFrame(
        {"image": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)], "mpp": [2.0]}))
    wide = pd.DataFrame({"image": [np.zeros((96, 96, 3), np.uint8)] * 2 + [_kron(np.zeros(
        (32, 32, 3), np.uint8))], "mpp": 1.0})
    with pytest.warns(TileSizeWarning, match=r"2 of 3 declared tile\(s\) measure \[48\] px.*32 px"):
        out = step.transform(wide)
    assert [t.shape[0] for t in out["image"]] == [48, 48, 32]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step.transform(wide.iloc[2:])


def test_nan_mpp_declares_nothing():
    rng = np.random.default_rng(9)
    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    step = TileResampler().fit(pd.DataFrame({"image": small, "mpp": [2.0, np.nan, 2.0]}))
    assert step.training_resolution_ == (2.0, 32) and step.mpp_declared_
    X = pd.DataFrame({"image": [small[0], _kron(small[1])], "mpp": [np.nan, 1.0]})
    out = step.transform(X)
    assert out["image"].iloc[0] is small[0]
    assert out["image"].iloc[1].shape == (32, 32, 3)
    assert out["mpp"].tolist() == [2.0, 2.0]
    # A column that declares nothing at all is as no column.
    none = TileResampler().fit(pd.DataFrame({"image": small, "mpp": np.nan}))
    assert not none.mpp_declared_ and none.training_resolution_ == (DEFAULT_RESOLUTION[0], 32)
    unknown = TileResampler().fit(pd.DataFrame({"image": small}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declares nothing, so no ResolutionUnknownWarning
        assert list(unknown.transform(pd.DataFrame({"image": small, "mpp": np.nan})).columns) \
            == ["image"]
    with pytest.raises(ValueError, match=r"X\['mpp'\] must hold positive"):
        TileResampler().fit(pd.DataFrame({"image": small[:1], "mpp": [np.inf]}))


def test_tile_side_reads_float_tiffs_and_names_bad_files(tmp_path):
    import tifffile

    from hiercls.data.images import UnreadableTileError
    from hiercls.features.resolution import tile_side

    path = tmp_path / "float.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((20, 30, 3)).astype(np.float32),
                     photometric="rgb")
    assert tile_side(str(path)) == (20, 30)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UnreadableTileError, match="bad.png"):
        tile_side(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        tile_side(str(tmp_path / "missing.png"))


def test_cli_fit_and_evaluate_pass_mpp_to_the_resolution_step():
    from hiercls.cli import build_parser
    from hiercls.cli.model_options import _make_pipeline

    parser = build_parser()
    for command in (["fit", "data", "--model", "m.hiercls"], ["evaluate", "data", "--out", "o"]):
        args = parser.parse_args(command + ["--mpp", "0.5"])
        pipe = _make_pipeline(args, verbose=0, radiomics_verbose=0)
        assert pipe.named_steps["resolution"].mpp == 0.5
        assert _make_pipeline(parser.parse_args(command), verbose=0,
                              radiomics_verbose=0).named_steps["resolution"].mpp is None
        with pytest.raises(SystemExit):
            parser.parse_args(command + ["--mpp", "0"])


def test_resampler_fitted_state_round_trips_and_is_checked():
    X = pd.DataFrame({"image": [np.zeros((8, 8, 3), dtype=np.uint8)] * 2, "mpp": [1.0, 1.0]})
    fitted = TileResampler().fit(X)
    state = fitted.get_fitted_state()
    assert state == {"feature_names_in_": ["image", "mpp"], "training_resolution_": [1.0, 8],
                     "mpp_declared_": True}
    restored = TileResampler().set_fitted_state(state)
    assert restored.training_resolution_ == fitted.training_resolution_
    assert restored.n_features_in_ == 2
    with pytest.raises(ValueError, match="training_resolution_ must be"):
        TileResampler().set_fitted_state({**state, "training_resolution_": [-1.0, 8]})


def test_resampling_an_original_is_the_recipe_of_the_tcia_512_px_copies(real_data_dir):
    """The 512 px copies are Pillow's Lanczos of the 1024 px originals saved as JPEG 90:
    the package's resampling, then that JPEG, gives them back bit for bit."""
    import io

    from PIL import Image

    from hiercls.data.images import read_tile
    from hiercls.features.resolution import resample_tile

    originals = real_data_dir.parent / "osteosarcoma-ut-1024-sample"
    if not (originals / "manifest.csv").is_file():
        pytest.skip(f"the 1024 px TCIA originals are not at {originals}")
    manifest = pd.read_csv(originals / "manifest.csv")
    for path in manifest.groupby("patient")["path"].first():
        original = read_tile(str(originals / path))
        copy = read_tile(str(real_data_dir / path))
        resampled = resample_tile(original, size=512)
        buffer = io.BytesIO()
        Image.fromarray(resampled).save(buffer, "JPEG", quality=90)
        np.testing.assert_array_equal(read_tile(Image.open(buffer)), copy)
        # Without the JPEG the package's tile differs from the copy by the JPEG's noise
        # only; a subsampling (a pyramid level made so) is further off.
        off = np.abs(resampled.astype(float) - copy).mean()
        assert 0 < off < np.abs(original[::2, ::2].astype(float) - copy).mean()
