
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hiercls.features.radiomics import FEATURE_NAMES, RadiomicsMaskWarning, RadiomicsTransformer
from hiercls.features.radiomics import transformer as transformer_module


def _tiles(n=4, size=24, seed=0):
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(n):
        tile = np.full((size, size, 3), 230, dtype=np.uint8)
        tile[4:18, 6:20] = rng.integers(60, 110, size=(14, 14, 3), dtype=np.uint8)
        tiles.append(tile)
    return pd.DataFrame({"image": tiles, "patient": [f"p{i % 2}" for i in range(n)]})


def test_transform_appends_29_named_float_columns_and_keeps_the_rest():
    X = _tiles()
    out = RadiomicsTransformer(cache=None).fit_transform(X)
    assert list(out.columns) == ["image", "patient", *FEATURE_NAMES]
    assert len(FEATURE_NAMES) == 29
    assert "firstorder_StandardDeviation" in out and "shape2D_SphericalDisproportion" in out
    assert out[list(FEATURE_NAMES)].dtypes.eq(np.float64).all()
    assert out.index.equals(X.index)
    assert out["patient"].tolist() == X["patient"].tolist()


def test_feature_names_out_match_the_columns_and_set_output_pandas():
    X = _tiles(2)
    transformer = RadiomicsTransformer(cache=None).set_output(transform="pandas")
    out = transformer.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(transformer.get_feature_names_out())


def test_features_are_those_of_the_gray_channel_inside_the_tissue_mask():
    X = _tiles(1)
    out = RadiomicsTransformer(cache=None, mask="tissue").fit_transform(X)
    # The dark square is the tissue: 14 x 14 pixels.
    assert out.loc[0, "shape2D_PixelSurface"] == 14 * 14
    full = RadiomicsTransformer(cache=None, mask="full").fit_transform(X)
    assert full.loc[0, "shape2D_PixelSurface"] == 24 * 24


def test_several_regions_give_prefixed_columns():
    out = RadiomicsTransformer(cache=None, mask=["full", "tissue"]).fit_transform(_tiles(1))
    assert "full__firstorder_Mean" in out and "tissue__shape2D_Perimeter" in out
    assert out.shape[1] == 2 + 2 * 29


def test_nuclei_mask_is_the_hematoxylin_dense_pixels():
    # A pink (eosin) background with a purple (hematoxylin) 6 x 5 blob.
    tile = np.zeros((20, 24, 3), dtype=np.uint8)
    tile[:] = (230, 150, 200)
    tile[5:11, 8:13] = (70, 40, 140)
    out = RadiomicsTransformer(cache=None, mask=["nuclei", "full"]).fit_transform(
        pd.DataFrame({"image": [tile]}))
    assert out.loc[0, "nuclei__shape2D_PixelSurface"] == 6 * 5
    assert out.loc[0, "full__shape2D_PixelSurface"] == 20 * 24


def test_make_mask_nuclei_needs_the_hematoxylin_channel_and_falls_back_when_flat():
    from hiercls.features.radiomics.masks import make_mask

    gray = np.full((8, 8), 120.0)
    with pytest.raises(ValueError, match="hematoxylin"):
        make_mask(gray, "nuclei")
    region, fell_back = make_mask(gray, "nuclei", hematoxylin=np.zeros((8, 8)))
    assert fell_back and region.all()


def test_hematoxylin_channel_differs_from_gray():
    X = _tiles(1)
    gray = RadiomicsTransformer(cache=None).fit_transform(X)
    hematoxylin = RadiomicsTransformer(cache=None, channel="hematoxylin").fit_transform(X)
    assert gray.loc[0, "firstorder_Mean"] != hematoxylin.loc[0, "firstorder_Mean"]


def test_cache_reuses_features_and_is_keyed_by_settings(tmp_path, monkeypatch):
    X = _tiles(3)
    first = RadiomicsTransformer(cache=tmp_path).fit_transform(X)
    assert len(list(tmp_path.rglob("*.npy"))) == 3

    def refuse(*args, **kwargs):
        raise AssertionError("features were recomputed although cached")

    monkeypatch.setattr(transformer_module, "tile_radiomics", refuse)
    again = RadiomicsTransformer(cache=tmp_path).fit_transform(X)
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(AssertionError, match="recomputed"):
        RadiomicsTransformer(cache=tmp_path, bin_width=10).fit_transform(X)


def test_parallel_extraction_equals_sequential():
    X = _tiles(4)
    sequential = RadiomicsTransformer(cache=None, n_jobs=1).fit_transform(X)
    parallel = RadiomicsTransformer(cache=None, n_jobs=2).fit_transform(X)
    pd.testing.assert_frame_equal(sequential, parallel)


def test_constant_tile_falls_back_to_the_full_tile_with_one_warning():
    X = pd.DataFrame({"image": [np.full((16, 16, 3), 200, np.uint8)] * 2})
    with pytest.warns(RadiomicsMaskWarning, match="whole tile") as record:
        out = RadiomicsTransformer(cache=None).fit_transform(X)
    assert len([w for w in record if w.category is RadiomicsMaskWarning]) == 1
    assert out.loc[0, "shape2D_PixelSurface"] == 256
    assert np.isfinite(out[list(FEATURE_NAMES)].to_numpy()).all()


def test_grayscale_and_rgba_images_are_converted(tmp_path):
    gray = np.tile(np.linspace(40, 220, 20, dtype=np.uint8), (20, 1))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.dstack([np.repeat(gray[:, :, None], 3, 2), np.full((20, 20), 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    X = pd.DataFrame({"image": [str(tmp_path / "gray.png"), tmp_path / "rgba.png", gray]})
    out = RadiomicsTransformer(cache=None).fit_transform(X)
    np.testing.assert_allclose(out.iloc[0, 1:].to_numpy(float), out.iloc[1, 1:].to_numpy(float))
    np.testing.assert_allclose(out.iloc[0, 1:].to_numpy(float), out.iloc[2, 1:].to_numpy(float))


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        RadiomicsTransformer(cache=None).fit_transform(pd.DataFrame({"image": [str(tmp_path / "absent.jpg")]}))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        RadiomicsTransformer(cache=None).fit_transform(pd.DataFrame({"image": [broken]}))


@pytest.mark.parametrize("params, message", [
    ({"channel": "eosin"}, "channel must be one of"),
    ({"mask": "stroma"}, "mask must be one of"),
    ({"bin_width": 0}, "bin_width must be a positive"),
    ({"backend": "gpu"}, "backend must be one of"),
    ({"cache": 3}, "cache must be"),
])
def test_bad_parameters_are_named_at_fit(params, message):
    with pytest.raises(ValueError, match=message):
        RadiomicsTransformer(**params).fit(_tiles(1))


def test_bad_frames_are_rejected():
    with pytest.raises(ValueError, match="no 'image' column"):
        RadiomicsTransformer().fit(pd.DataFrame({"path": ["a.jpg"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        RadiomicsTransformer().fit(["a.jpg"])
    fitted = RadiomicsTransformer(cache=None).fit(_tiles(1))
    with pytest.raises(ValueError, match="fitted on"):
        fitted.transform(_tiles(1)[["image"]])
