import numpy as np
import pytest

from hiercls.images import read_tile, tile_digest


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
