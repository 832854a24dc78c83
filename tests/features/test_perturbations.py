import numpy as np
import pytest
import torch
from skimage.color import rgb2hed

from hiercls.features.perturbations import gaussian_blur, jpeg_recompress, stain_shift


def _tile(size=32, seed=0):
    # Smooth tissue-like colours plus texture (mostly in brightness, as in H&E), with no
    # clipped pixel.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([150 + 60 * np.sin(6 * x), 90 + 50 * np.cos(5 * y), 160 + 40 * x * y], -1)
    texture = rng.normal(0, 12, (size, size, 1)) + rng.normal(0, 3, base.shape)
    return np.clip(base + texture, 20, 235).astype(np.uint8)


def _changed(a, b):
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


# --- stain_shift ------------------------------------------------------------------------


def test_stain_shift_changes_the_stain_densities_and_keeps_the_input():
    tile = _tile()
    before = tile.copy()
    shifted = stain_shift(tile, 0.1, rng=3)
    assert shifted.dtype == np.uint8 and shifted.shape == tile.shape
    np.testing.assert_array_equal(tile, before)
    assert _changed(shifted, tile) > 1.0
    # What moved is the stain: the mean HED densities differ.
    assert not np.allclose(rgb2hed(shifted).mean(axis=(0, 1)), rgb2hed(tile).mean(axis=(0, 1)),
                           atol=1e-3)


def test_stain_shift_is_deterministic_for_each_kind_of_rng():
    tile = _tile()
    np.testing.assert_array_equal(stain_shift(tile, 0.1, 5), stain_shift(tile, 0.1, 5))
    np.testing.assert_array_equal(stain_shift(tile, 0.1, np.random.default_rng(5)),
                                  stain_shift(tile, 0.1, np.random.default_rng(5)))
    np.testing.assert_array_equal(stain_shift(tile, 0.1, torch.Generator().manual_seed(5)),
                                  stain_shift(tile, 0.1, torch.Generator().manual_seed(5)))
    assert _changed(stain_shift(tile, 0.1, 5), stain_shift(tile, 0.1, 6)) > 0.5


def test_stain_shift_at_zero_strength_is_the_identity():
    tile = _tile()
    out = stain_shift(tile, 0.0, rng=0)
    np.testing.assert_array_equal(out, tile)
    assert out is not tile
    # A vanishing strength is the identity up to rounding: the deconvolution is invertible.
    assert np.abs(stain_shift(tile, 1e-9, rng=0).astype(int) - tile).max() <= 1


@pytest.mark.parametrize("strength", [-0.1, 1.0, "strong", True, float("nan")])
def test_bad_stain_strength_is_named(strength):
    with pytest.raises(ValueError, match="strength"):
        stain_shift(_tile(), strength, rng=0)


def test_bad_stain_rng_is_named():
    with pytest.raises(TypeError, match="rng"):
        stain_shift(_tile(), 0.1, rng=0.5)


# --- gaussian_blur ----------------------------------------------------------------------


def test_gaussian_blur_smooths_each_channel_and_keeps_the_mean():
    tile = _tile()
    blurred = gaussian_blur(tile, 1.5)
    assert blurred.dtype == np.uint8 and blurred.shape == tile.shape
    # Less high-frequency energy, about the same brightness per channel.
    def roughness(image):
        return np.abs(np.diff(image.astype(float), axis=1)).mean(axis=(0, 1))
    assert (roughness(blurred) < 0.6 * roughness(tile)).all()
    np.testing.assert_allclose(blurred.mean(axis=(0, 1)), tile.mean(axis=(0, 1)), atol=1.0)
    # Channels are blurred apart: a red-only tile stays red-only.
    red = np.zeros_like(tile)
    red[..., 0] = tile[..., 0]
    assert not gaussian_blur(red, 1.5)[..., 1:].any()


def test_gaussian_blur_is_deterministic_and_the_identity_at_zero():
    tile = _tile()
    np.testing.assert_array_equal(gaussian_blur(tile, 0.7), gaussian_blur(tile, 0.7))
    out = gaussian_blur(tile, 0.0)
    np.testing.assert_array_equal(out, tile)
    assert out is not tile


def test_gaussian_blur_rounds_rather_than_truncates():
    flat = np.full((8, 8, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(gaussian_blur(flat, 2.0), flat)


@pytest.mark.parametrize("sigma", [-0.5, float("inf"), "1", None])
def test_bad_blur_sigma_is_named(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(_tile(), sigma)


# --- jpeg_recompress --------------------------------------------------------------------


def test_jpeg_recompress_loses_more_at_lower_quality():
    tile = _tile()
    errors = [_changed(jpeg_recompress(tile, quality), tile) for quality in (5, 30, 60, 95)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[0] > 3.0


def test_jpeg_recompress_is_deterministic_and_close_at_quality_95():
    tile = _tile()
    out = jpeg_recompress(tile, 95)
    assert out.dtype == np.uint8 and out.shape == tile.shape
    np.testing.assert_array_equal(out, jpeg_recompress(tile, 95))
    # Never the identity (JPEG is lossy), but close.
    assert 0 < _changed(out, tile) < min(4.0, 0.5 * _changed(jpeg_recompress(tile, 60), tile))


@pytest.mark.parametrize("quality", [0, 96, 100, 50.0, "60", True, None])
def test_bad_jpeg_quality_is_named(quality):
    with pytest.raises(ValueError, match="quality"):
        jpeg_recompress(_tile(), quality)


# --- the tile itself ----------------------------------------------------------------------


@pytest.mark.parametrize("perturb", [lambda t: stain_shift(t, 0.1, 0),
                                     lambda t: gaussian_blur(t, 1.0),
                                     lambda t: jpeg_recompress(t, 60)],
                         ids=["stain_shift", "gaussian_blur", "jpeg_recompress"])
def test_non_uint8_tiles_are_refused(perturb):
    with pytest.raises(TypeError, match="uint8"):
        perturb(_tile().astype(np.float32) / 255.0)
    with pytest.raises(TypeError, match="numpy array"):
        perturb(_tile().tolist())
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        perturb(_tile()[..., 0])
