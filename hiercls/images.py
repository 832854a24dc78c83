"""Reading a tile, given as a file path or an array, into an RGB uint8 array."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

IMAGE_COLUMN = "image"


def check_image_frame(X, *, name="X"):
    """Check that ``X`` is a DataFrame with an ``image`` column and return it.

    Raises
    ------
    TypeError
        If ``X`` is not a pandas DataFrame.
    ValueError
        If the ``image`` column is missing or ``X`` has no rows.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame with an {IMAGE_COLUMN!r} column holding "
            f"file paths or RGB arrays; got {type(X).__name__}"
        )
    if IMAGE_COLUMN not in X.columns:
        raise ValueError(
            f"{name} has no {IMAGE_COLUMN!r} column; expected one row per tile with its "
            f"file path or RGB array in {IMAGE_COLUMN!r} (columns found: {list(X.columns)})"
        )
    if len(X) == 0:
        raise ValueError(f"{name} has no rows; expected at least one tile")
    return X


def read_tile(tile):
    """Return a tile as an RGB ``uint8`` array of shape (H, W, 3).

    Parameters
    ----------
    tile : str, os.PathLike or ndarray
        A path to an image file, or an array of shape (H, W), (H, W, 3) or (H, W, 4).
        Grayscale images are repeated over three channels and RGBA images lose their
        alpha channel (composited on white, as a slide scanner's background), so every
        tile reaches the model as RGB. Float arrays are taken to lie in [0, 1].

    Raises
    ------
    FileNotFoundError
        If the path does not exist (the message names it).
    ValueError
        If the file is not a readable image or the array has an unexpected shape or dtype.
    """
    if isinstance(tile, (str, os.PathLike)):
        path = Path(tile)
        if not path.is_file():
            raise FileNotFoundError(f"tile image not found: {str(path)!r}")
        try:
            with Image.open(path) as opened:
                opened.load()
                return _rgb_from_pil(opened)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"tile image {str(path)!r} is not a readable image: {exc}") from exc
    if isinstance(tile, Image.Image):
        return _rgb_from_pil(tile)
    if isinstance(tile, np.ndarray):
        return _rgb_from_array(tile)
    raise TypeError(
        f"a tile must be a file path or an RGB array; got {type(tile).__name__}"
    )


def _rgb_from_pil(image):
    if image.mode in ("RGBA", "LA", "P") and ("A" in image.getbands() or "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _rgb_from_array(array):
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("tile array contains NaN or infinite values")
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise ValueError(
                f"tile array must be uint8 (or floats in [0, 1]); got dtype {array.dtype}"
            )
        array = array.astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        rgb = array[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    raise ValueError(
        f"tile array must have shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}"
    )


def tile_digest(tile):
    """A content hash of a tile: the file's bytes for a path, the pixels for an array.

    Two tiles with the same digest give the same features, wherever they are stored, so
    the digest keys the feature caches.
    """
    digest = hashlib.sha1()
    if isinstance(tile, (str, os.PathLike)):
        path = Path(tile)
        if not path.is_file():
            raise FileNotFoundError(f"tile image not found: {str(path)!r}")
        digest.update(b"file:")
        digest.update(path.read_bytes())
    else:
        array = np.ascontiguousarray(np.asarray(tile))
        digest.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
