"""The fast backend computes PyRadiomics' 29 features, to rounding, without PyRadiomics."""

import itertools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from hiercls.features.radiomics.fast_backend import (
    _PERCENTILES,
    _linear_percentiles,
    _mesh_diameter,
    extract_fast,
    extract_fast_batch,
)
from hiercls.features.radiomics.names import FEATURE_NAMES
from hiercls.features.radiomics.pyradiomics_backend import extract_pyradiomics

RTOL, ATOL = 1e-6, 1e-9

DATA_DIR = Path(
    os.environ.get("HIERCLS_DATA_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "osteosarcoma-ut-512"
)

#: Real tiles whose Otsu tissue masks have short borders, so that PyRadiomics'
#: all-pairs diameter stays well under a second; three classes, several slides.
REAL_TILES = (
    "Training-Set-1/set10/P9-B11-25615-35242.jpg",  # Non-Tumor, 2 % tissue
    "Training-Set-2/set12/P9-B6-18107-15557.jpg",  # Non-Tumor, 30 % tissue
    "Training-Set-2/set2/Case-3-A16-5621-4126.jpg",  # Non-Viable-Tumor
    "Training-Set-2/set4/Case-4-C27-27896-8735.jpg",  # Non-Viable-Tumor
    "Training-Set-1/set7/Case-48-P5-C14-67137-24045.jpg",  # Viable-Tumor, 37 % tissue
    "Training-Set-1/set6/Case-48-P5-C14-50416-27346.jpg",  # Viable-Tumor
)


def assert_same_features(expected, actual):
    """Every feature within RTOL relative, or ATOL absolute near 0; NaN only where NaN."""
    assert actual.shape == (len(FEATURE_NAMES),) and actual.dtype == np.float64
    close = np.isclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    bad = {
        name: (float(e), float(a))
        for name, e, a, ok in zip(FEATURE_NAMES, expected, actual, close)
        if not ok
    }
    assert not bad, f"features differing from PyRadiomics (reference, fast): {bad}"


def reference(channel, region, bin_width=25.0):
    with warnings.catch_warnings():
        # PyRadiomics warns about deprecated features and empty means; not our concern.
        warnings.simplefilter("ignore")
        return extract_pyradiomics(channel, region, bin_width=bin_width)


def _grid(shape):
    return np.mgrid[: shape[0], : shape[1]]


def _region(kind, shape, rng):
    y, x = _grid(shape)
    h, w = shape
    if kind == "whole":
        return np.ones(shape, bool)
    if kind == "disk":
        return (y - h / 2) ** 2 + (x - w / 2.3) ** 2 < (min(h, w) / 2.8) ** 2
    if kind == "ring_with_hole":
        r2 = (y - h / 2) ** 2 + (x - w / 2) ** 2
        return (r2 < (min(h, w) / 2.2) ** 2) & (r2 > (min(h, w) / 5) ** 2)
    if kind == "touching_every_border":
        return (y < 3) | (y >= h - 2) | (x < 2) | (x >= w - 4) | (np.abs(y - x) < 2)
    if kind == "several_components":
        blobs = ((y - 5) ** 2 + (x - 6) ** 2 < 12) | ((y - h + 8) ** 2 + (x - w + 9) ** 2 < 30)
        blobs[h // 2, w // 2] = blobs[h // 2 + 1, w // 2 + 5] = True  # lone pixels too
        return blobs
    if kind == "random_speckle":
        return rng.random(shape) < 0.45
    if kind == "checkerboard_saddles":
        return ((y + x) % 2 == 0) & (y > 2) & (x > 1)
    if kind == "diagonal_line":
        return y == x
    if kind == "thin_l_shape":
        return ((y == 4) & (x >= 3)) | ((x == 3) & (y >= 4))
    if kind == "two_diagonal_pixels":
        region = np.zeros(shape, bool)
        region[5, 5] = region[6, 6] = True
        return region
    if kind == "three_pixels":
        region = np.zeros(shape, bool)
        region[0, 0] = region[0, 1] = region[1, 0] = True
        return region
    raise ValueError(kind)


REGIONS = (
    "whole", "disk", "ring_with_hole", "touching_every_border", "several_components",
    "random_speckle", "checkerboard_saddles", "diagonal_line", "thin_l_shape",
    "two_diagonal_pixels", "three_pixels",
)


def _intensity(kind, shape, rng):
    if kind == "uniform_0_255":
        return rng.uniform(0, 255, shape)
    if kind == "negative_and_positive":
        return rng.normal(-40, 90, shape)
    if kind == "integers_on_bin_edges":
        return rng.choice([0.0, 25.0, 50.0, 75.0, 99.0, 100.0, 125.0], size=shape)
    if kind == "gradient":
        y, x = _grid(shape)
        return 3.0 * y + 0.5 * x - 17.0
    raise ValueError(kind)


INTENSITIES = ("uniform_0_255", "negative_and_positive", "integers_on_bin_edges", "gradient")


@pytest.mark.parametrize(
    ("region_kind", "intensity_kind"),
    [(r, i) for r, i in itertools.product(REGIONS, INTENSITIES)],
)
def test_matches_pyradiomics_on_generated_regions_and_intensities(region_kind, intensity_kind):
    seed = REGIONS.index(region_kind) * 10 + INTENSITIES.index(intensity_kind)
    rng = np.random.default_rng(seed)
    shape = (23, 31)
    channel, region = _intensity(intensity_kind, shape, rng), _region(region_kind, shape, rng)
    assert_same_features(reference(channel, region), extract_fast(channel, region))


@pytest.mark.parametrize("bin_width", [0.5, 3.7, 25, 25.0, 1000.0])
def test_matches_pyradiomics_for_any_bin_width(bin_width):
    rng = np.random.default_rng(7)
    channel = rng.normal(60, 40, (30, 28))
    region = _region("disk", channel.shape, rng)
    assert_same_features(
        reference(channel, region, bin_width), extract_fast(channel, region, bin_width=bin_width)
    )


@pytest.mark.parametrize("value", [100.0, 0.0, 25.0, -3.0, 0.1, 0.3, 17.9])
def test_constant_intensity_matches_pyradiomics_including_its_skewness_quirk(value):
    # PyRadiomics returns Skewness and Kurtosis 0 for a flat region only when the mean
    # of its values is exact; for 0.1 or 0.3 repeated, rounding leaves equal tiny
    # deviations and it returns Skewness +-1 and Kurtosis 1. We follow its arithmetic.
    rng = np.random.default_rng(3)
    channel = np.full((20, 50), value)
    region = rng.random(channel.shape) < 0.5
    expected, actual = reference(channel, region), extract_fast(channel, region)
    assert_same_features(expected, actual)
    assert actual[FEATURE_NAMES.index("firstorder_Variance")] < 1e-20
    assert actual[FEATURE_NAMES.index("firstorder_Uniformity")] == 1.0


def test_two_pixel_region_has_nan_robust_mad_as_pyradiomics_has():
    channel = np.arange(100.0).reshape(10, 10)
    region = _region("two_diagonal_pixels", channel.shape, None)
    features = extract_fast(channel, region)
    assert np.isnan(features[FEATURE_NAMES.index("firstorder_RobustMeanAbsoluteDeviation")])
    assert_same_features(reference(channel, region), features)


def test_collinear_pixels_have_exactly_zero_minor_axis_and_elongation():
    channel = np.ones((40, 40))
    features = extract_fast(channel, _region("diagonal_line", channel.shape, None))
    assert features[FEATURE_NAMES.index("shape2D_MinorAxisLength")] == 0.0
    assert features[FEATURE_NAMES.index("shape2D_Elongation")] == 0.0


@pytest.mark.parametrize(
    ("name", "cells"),
    [
        ("empty", []),
        ("one_pixel", [(4, 4)]),
        ("one_row", [(4, 2), (4, 3), (4, 7)]),
        ("one_column", [(1, 5), (6, 5)]),
    ],
)
def test_rejects_the_regions_pyradiomics_rejects(name, cells):
    channel = np.random.default_rng(0).uniform(0, 255, (9, 9))
    region = np.zeros(channel.shape, bool)
    for cell in cells:
        region[cell] = True
    with pytest.raises(ValueError):
        reference(channel, region)
    with pytest.raises(ValueError, match="region"):
        extract_fast(channel, region)


def test_rejects_bad_inputs_with_clear_messages():
    channel, region = np.zeros((5, 5)), np.ones((5, 5), bool)
    with pytest.raises(ValueError, match="does not match"):
        extract_fast(channel, region[:4])
    with pytest.raises(ValueError, match="2D"):
        extract_fast(np.zeros((5, 5, 3)), np.ones((5, 5, 3), bool))
    with pytest.raises(ValueError, match="bin_width"):
        extract_fast(channel, region, bin_width=0)
    channel[2, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        extract_fast(channel, region)
    # A NaN outside the region is not looked at.
    region[2, 2] = False
    assert np.isfinite(extract_fast(channel, region)).all()


def test_features_do_not_depend_on_where_the_region_sits_in_the_image():
    rng = np.random.default_rng(11)
    channel = rng.uniform(0, 255, (20, 20))
    region = _region("ring_with_hole", channel.shape, rng)
    big_channel = np.full((50, 70), np.nan)
    big_region = np.zeros(big_channel.shape, bool)
    big_channel[17:37, 33:53], big_region[17:37, 33:53] = channel, region
    np.testing.assert_array_equal(extract_fast(big_channel, big_region), extract_fast(channel, region))


def test_accepts_integer_channels_and_integer_masks():
    rng = np.random.default_rng(5)
    channel = rng.integers(0, 256, (16, 18), dtype=np.uint8)
    region = (rng.random(channel.shape) < 0.6).astype(np.uint8)
    assert_same_features(reference(channel, region), extract_fast(channel, region))


def test_percentiles_follow_numpys_linear_method_to_the_bit():
    # The robust MAD keeps values equal to P10 and P90, so the percentiles must be
    # numpy's (PyRadiomics' nanpercentile), not merely close to them.
    rng = np.random.default_rng(2)
    for size in [2, 3, 4, 5, 7, 10, 11, 99, 100, 1001, 4096]:
        for values in (rng.normal(0, 50, size), rng.integers(0, 9, size).astype(float)):
            expected = [np.percentile(values, q) for q in (10, 25, 75, 90)]
            np.testing.assert_array_equal(_linear_percentiles(np.sort(values), _PERCENTILES), expected)


def _all_pairs_mesh_diameter(region):
    """The definition: largest distance between any two marching-squares mesh vertices."""
    padded = np.pad(region, 1)
    vertical = np.argwhere(padded[:-1] != padded[1:]) * 2 + [1, 0]
    horizontal = np.argwhere(padded[:, :-1] != padded[:, 1:]) * 2 + [0, 1]
    vertices = np.concatenate((vertical, horizontal)) / 2.0
    delta = vertices[:, None] - vertices[None]
    return math.sqrt((delta**2).sum(axis=2).max())


@pytest.mark.parametrize("seed", range(8))
def test_hull_diameter_equals_the_all_pairs_diameter_of_the_mesh(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(3, 40, size=2))
    region = rng.random(shape) < rng.uniform(0.02, 0.9)
    region[rng.integers(shape[0]), :] |= seed % 2 == 0  # sometimes a full-width row
    if region.sum() < 2:
        region[0, 0] = region[-1, -1] = True
    assert _mesh_diameter(region) == pytest.approx(_all_pairs_mesh_diameter(region), rel=1e-12)


def test_batch_equals_one_call_per_tile_and_accepts_different_sizes():
    rng = np.random.default_rng(9)
    channels = [rng.uniform(0, 255, (12, 15)), rng.uniform(0, 255, (30, 20))]
    regions = [rng.random(c.shape) < 0.5 for c in channels]
    batch = extract_fast_batch(channels, regions, bin_width=10.0)
    assert batch.shape == (2, len(FEATURE_NAMES))
    for row, channel, region in zip(batch, channels, regions):
        np.testing.assert_array_equal(row, extract_fast(channel, region, bin_width=10.0))
    with pytest.raises(ValueError, match="regions"):
        extract_fast_batch(channels, regions[:1])


@pytest.fixture(scope="module")
def real_tiles():
    if not (DATA_DIR / "manifest.csv").is_file():
        pytest.skip(f"real tiles not found at {DATA_DIR} (set HIERCLS_DATA_DIR to run)")
    missing = [p for p in REAL_TILES if not (DATA_DIR / p).is_file()]
    if missing:
        pytest.skip(f"sample tiles missing under {DATA_DIR}: {missing}")
    return DATA_DIR


@pytest.mark.parametrize("relative_path", REAL_TILES)
def test_matches_pyradiomics_on_real_tiles_for_both_channels_and_masks(real_tiles, relative_path):
    from hiercls.data.images import read_tile
    from hiercls.features.radiomics.channels import to_channel
    from hiercls.features.radiomics.masks import make_mask

    rgb = read_tile(real_tiles / relative_path)
    gray = to_channel(rgb, "gray")
    for channel_name, mask_name in itertools.product(("gray", "hematoxylin"), ("full", "tissue")):
        channel = to_channel(rgb, channel_name)
        region, fell_back = make_mask(gray, mask_name)
        assert not fell_back
        assert_same_features(reference(channel, region), extract_fast(channel, region))


def test_matches_pyradiomics_on_a_real_nuclei_mask(real_tiles):
    # Hundreds of small components with holes: the hardest mask for the shape features.
    from hiercls.data.images import read_tile
    from hiercls.features.radiomics.channels import to_channel
    from hiercls.features.radiomics.masks import make_mask

    rgb = read_tile(real_tiles / REAL_TILES[2])
    gray, hematoxylin = to_channel(rgb, "gray"), to_channel(rgb, "hematoxylin")
    region, fell_back = make_mask(gray, "nuclei", hematoxylin=hematoxylin)
    assert not fell_back and 0.01 < region.mean() < 0.9
    assert_same_features(reference(hematoxylin, region), extract_fast(hematoxylin, region))
