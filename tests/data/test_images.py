import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from hiercls.data.images import (
    UnreadableTileError,
    check_tiles,
    find_unreadable_tiles,
    read_tile,
    tile_digest,
)


def test_arrays_of_every_accepted_shape_become_rgb_uint8():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert read_tile(gray).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited on white
    assert (read_tile(rgba) == 255).all()
    floats = np.full((2, 2, 3), 0.5)
    assert read_tile(floats).dtype == np.uint8 and read_tile(floats)[0, 0, 0] == 128


def test_unexpected_arrays_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        read_tile(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        read_tile(np.full((2, 2, 3), 300, np.int32))
    with pytest.raises(TypeError, match="file path or an RGB array"):
        read_tile(42)


def test_digest_depends_on_content_not_location(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert tile_digest(a) == tile_digest(str(b))
    assert tile_digest(np.zeros((2, 2, 3), np.uint8)) != tile_digest(np.ones((2, 2, 3), np.uint8))


# --------------------------------------------------------------------------------------
# More than 8 bits: scaled by 1/257, never saturated

#: Every 16-bit level from 0 to 65535 in steps of 257 (0..255 after scaling), and between.
RAMP16 = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)


def _scaled(values):
    return np.rint(values / 257.0).astype(np.uint8)


def test_a_16_bit_png_is_scaled_to_8_bits_not_saturated(tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(RAMP16).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_tile(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (32, 32, 3)
    np.testing.assert_array_equal(rgb, np.repeat(_scaled(RAMP16)[:, :, None], 3, axis=2))
    assert len(np.unique(rgb)) == 256                  # not two gray levels


def test_16_bit_tiffs_gray_and_rgb_are_scaled_to_8_bits(tmp_path):
    tifffile.imwrite(tmp_path / "gray16.tif", RAMP16, photometric="minisblack")
    np.testing.assert_array_equal(read_tile(tmp_path / "gray16.tif")[:, :, 1], _scaled(RAMP16))
    rgb16 = np.stack([RAMP16, RAMP16[::-1], np.full_like(RAMP16, 40000)], axis=2)
    tifffile.imwrite(tmp_path / "rgb16.tiff", rgb16, photometric="rgb")
    np.testing.assert_array_equal(read_tile(tmp_path / "rgb16.tiff"), _scaled(rgb16))
    rgba16 = np.concatenate([rgb16, np.full_like(RAMP16, 65535)[:, :, None]], axis=2)
    tifffile.imwrite(tmp_path / "rgba16.tif", rgba16, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_tile(tmp_path / "rgba16.tif"), _scaled(rgb16))
    # A damaged or truncated 16-bit TIFF is named, like any unreadable tile.
    (tmp_path / "empty.tif").write_bytes(b"II*\x00" + bytes(10))
    data = (tmp_path / "rgb16.tiff").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    for name in ("empty.tif", "cut.tif"):
        with pytest.raises(UnreadableTileError, match=name):
            read_tile(tmp_path / name)
    # Other integer depths (32-bit; 12-bit likewise) do not follow the 1/257 rule: refused.
    for dtype in (np.uint32, np.int16):
        name = f"gray-{np.dtype(dtype).name}.tif"
        tifffile.imwrite(tmp_path / name, RAMP16.astype(dtype), photometric="minisblack")
        with pytest.raises(UnreadableTileError, match=f"{name}.*not supported"):
            read_tile(tmp_path / name)
    # An 8-bit TIFF is still Pillow's.
    tifffile.imwrite(tmp_path / "rgb8.tif", _scaled(rgb16), photometric="rgb")
    np.testing.assert_array_equal(read_tile(tmp_path / "rgb8.tif"), _scaled(rgb16))


def test_uint16_arrays_follow_the_same_rule_as_16_bit_files():
    np.testing.assert_array_equal(read_tile(RAMP16)[:, :, 0], _scaled(RAMP16))
    assert read_tile(np.full((2, 2, 3), 65535, np.uint16)).max() == 255
    assert read_tile(np.full((2, 2, 3), 128, np.uint16)).max() == 0    # by type, not content
    assert read_tile(np.full((2, 2), 200, np.int64)).max() == 200       # other integers: 0..255


def test_every_pillow_mode_is_converted_or_refused():
    ramp = _scaled(RAMP16)
    big_endian = Image.frombytes("I;16B", (32, 32), RAMP16.astype(">u2").tobytes())
    np.testing.assert_array_equal(read_tile(big_endian)[:, :, 0], ramp)
    np.testing.assert_array_equal(read_tile(Image.fromarray(RAMP16.astype(np.int32)))[:, :, 0], ramp)
    floats = Image.fromarray(np.full((4, 4), 0.5, np.float32))
    assert read_tile(floats).max() == 128
    bits = Image.fromarray(np.eye(4, dtype=bool))
    assert bits.mode == "1" and set(np.unique(read_tile(bits))) == {0, 255}
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))                    # pure red ink-wise
    assert read_tile(cmyk)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="mode 'LAB' is not supported"):
        read_tile(Image.new("LAB", (4, 4)))
    with pytest.raises(ValueError, match=r"values -1\.\.65536"):
        read_tile(Image.fromarray(np.array([[-1, 65536]], np.int32)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        read_tile(Image.fromarray(np.full((4, 4), 3.0, np.float32)))


def test_float_tiles_outside_0_1_are_refused_not_clipped(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 1\]; got 0\.5\.\.255"):
        read_tile(np.array([[0.5, 255.0]]))
    Image.fromarray(np.full((4, 4), 40.0, np.float32)).save(tmp_path / "f32.tif")
    with pytest.raises(UnreadableTileError, match=r"f32\.tif.*\[0, 1\]"):
        read_tile(tmp_path / "f32.tif")


# --------------------------------------------------------------------------------------
# Unreadable tiles: named, all at once

def _broken_files(folder):
    good = folder / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(good)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = folder / "notes.jpg"
    text.write_text("not an image\n")
    return good, truncated, text


def test_a_truncated_jpeg_and_a_text_file_are_unreadable_tile_errors(tmp_path):
    good, truncated, text = _broken_files(tmp_path)
    assert read_tile(good).shape == (64, 64, 3)
    for path in (truncated, text):
        with pytest.raises(UnreadableTileError, match=path.name) as caught:
            read_tile(path)
        assert caught.value.paths == [str(path)] and isinstance(caught.value, ValueError)


def test_check_tiles_names_every_bad_tile_at_once(tmp_path):
    good, truncated, text = _broken_files(tmp_path)
    X = pd.DataFrame({"image": [str(good), str(truncated), str(good), str(text),
                                np.zeros((4, 4, 2), np.uint8), str(tmp_path / "gone.png")]})
    with pytest.raises(UnreadableTileError, match="4 tiles are not readable") as caught:
        check_tiles(X)
    error = caught.value
    assert error.rows == [1, 3, 4, 5]
    assert error.paths == [str(truncated), str(text), "row 4", str(tmp_path / "gone.png")]
    assert "truncated" in error.reasons[0] and "not found" in error.reasons[3]
    assert all(name in str(error) for name in error.paths)
    assert [row for row, _, _ in find_unreadable_tiles(X["image"])] == error.rows
    assert check_tiles(X.iloc[[0, 2]]) is not None


def test_the_message_names_the_first_five_and_counts_the_rest():
    error = UnreadableTileError([f"t{k}.jpg" for k in range(8)], ["bad"] * 8, range(8))
    assert "8 tiles" in str(error) and "'t4.jpg'" in str(error) and "'t5.jpg'" not in str(error)
    assert str(error).endswith("and 3 more")


def test_an_unreadable_tile_met_mid_work_is_named(tmp_path):
    from hiercls.estimator.tile_dataset import TileDataset
    from hiercls.features.radiomics import RadiomicsTransformer

    good, truncated, _ = _broken_files(tmp_path)
    X = pd.DataFrame({"image": [str(good), str(truncated)]})
    with pytest.raises(UnreadableTileError, match="truncated.jpg"):
        RadiomicsTransformer(mask="full", cache=None).fit_transform(X)
    with pytest.raises(UnreadableTileError, match="truncated.jpg"):
        RadiomicsTransformer(mask="full", cache=None, n_jobs=2).fit_transform(X)  # from a worker
    dataset = TileDataset(X, radiomic_columns=(), image_size=32, use_radiomics=False)
    assert dataset[0][0]["image"].shape == (3, 32, 32)
    with pytest.raises(UnreadableTileError, match="truncated.jpg"):
        dataset[1]
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1)
    with pytest.raises(UnreadableTileError, match="truncated.jpg"):   # rebuilt from a worker
        next(iter(loader))
