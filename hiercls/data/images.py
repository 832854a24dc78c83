"""Reading a tile, given as a file path or an array, into an RGB uint8 array.

Every tile reaches the features and the network as 8-bit RGB. Images of more than 8 bits
are scaled, never clipped: a 16-bit value ``v`` becomes ``round(v / 257)``, which maps the
full range 0..65535 onto 0..255 (65535 / 257 = 255 exactly). Formats that cannot be
mapped onto RGB without guessing are refused with an :class:`UnreadableTileError`.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..exceptions import UnreadableTileError  # noqa: F401  (its home before)

IMAGE_COLUMN = "image"

#: Image files taken as tiles when a folder is searched (compared case-insensitively):
#: the one list for the TCIA loader and the ``hiercls`` command's folders of tiles.
TILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

#: Bumped when a file's decoded pixels change (16-bit images were once saturated), so
#: that the feature caches keyed by :func:`tile_digest` never serve stale features.
_DECODER_VERSION = 2

#: Pillow modes holding 16 bits per pixel (one gray channel).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Pillow modes whose conversion to RGB is exact or the standard one.
_RGB_CONVERTIBLE_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")




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
        tile reaches the model as RGB. Pixel values are mapped onto 0..255 by type:
        8-bit values as they are; 16-bit values (16-bit PNG and TIFF, gray or RGB, and
        ``uint16`` arrays) as ``round(v / 257)``, the full range 0..65535 onto 0..255;
        floats (Pillow mode ``F``, float arrays) must lie in [0, 1] and become
        ``round(255 v)``; other integer arrays must lie in 0..255. 1-bit, palette,
        CMYK, YCbCr and HSV images are converted by Pillow. 16-bit TIFF files are read
        with ``tifffile``, which decodes the 16-bit RGB that Pillow cannot.

    Raises
    ------
    FileNotFoundError
        If the path does not exist (the message names it).
    UnreadableTileError
        If the file is not an image, cannot be decoded to its end (a truncated file),
        or holds pixels that cannot be mapped onto RGB (e.g. CIELab, values out of range).
    ValueError
        If an array has an unexpected shape, dtype or values.

    Examples
    --------
    >>> import numpy as np
    >>> read_tile(np.full((2, 2), 65535, np.uint16))[0, 0].tolist()
    [255, 255, 255]
    """
    if isinstance(tile, (str, os.PathLike)):
        path = Path(tile)
        if not path.is_file():
            raise FileNotFoundError(f"tile image not found: {str(path)!r}")
        try:
            pixels = _read_high_bit_depth_tiff(path)
            if pixels is not None:
                return _rgb_from_array(pixels)
            with Image.open(path) as opened:
                opened.load()
                return _rgb_from_pil(opened)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UnreadableTileError([path], [" ".join(str(exc).split())]) from exc
    if isinstance(tile, Image.Image):
        return _rgb_from_pil(tile)
    if isinstance(tile, np.ndarray):
        return _rgb_from_array(tile)
    raise TypeError(
        f"a tile must be a file path or an RGB array; got {type(tile).__name__}"
    )


def _read_high_bit_depth_tiff(path):
    """The pixels of a TIFF of more than 8 bits per sample, else None (Pillow reads it)."""
    with open(path, "rb") as handle:
        if handle.read(4) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.pages:
                raise ValueError("the TIFF file holds no image")
            page = tiff.pages[0]
            if page.bitspersample <= 8:
                return None  # 8-bit, palette, CMYK, ...: Pillow converts these
            if page.dtype.kind != "f" and (page.bitspersample != 16 or page.dtype.kind != "u"):
                # 12-bit data in 16-bit words would come out dark under the 1/257 rule.
                raise ValueError(f"{page.bitspersample}-bit {page.dtype} TIFF is not supported; "
                                 "expected 8 or 16 bits per sample (unsigned) or floats in [0, 1]")
            photometric = page.photometric.name
            if photometric not in ("MINISBLACK", "RGB"):
                raise ValueError(f"{page.bitspersample}-bit TIFF with photometric {photometric} "
                                 "is not supported; expected gray (MINISBLACK) or RGB")
            pixels = page.asarray()
    except (ValueError, OSError):
        raise
    except Exception as exc:  # a damaged TIFF fails in many ways inside tifffile
        raise ValueError(f"TIFF cannot be decoded: {type(exc).__name__}: {exc}") from exc
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[2] not in (3, 4):
        pixels = np.moveaxis(pixels, 0, 2)  # planar configuration: samples first
    return pixels


def _rgb_from_pil(image):
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _rgb_from_array(np.asarray(image).astype(np.uint16))
    if mode == "I":
        # 32-bit integers: what older Pillow gives for a 16-bit PNG. Taken as 16-bit.
        pixels = np.asarray(image)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError(f"32-bit integer image (mode 'I') has values {pixels.min()}.."
                             f"{pixels.max()}; expected 16-bit values 0..65535")
        return _rgb_from_array(pixels.astype(np.uint16))
    if mode == "F":
        return _rgb_from_array(np.asarray(image))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    elif mode not in _RGB_CONVERTIBLE_MODES:
        raise ValueError(f"image mode {mode!r} is not supported; expected 1-bit, gray, "
                         "palette, RGB(A), CMYK, YCbCr, HSV or 16-bit gray")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _rgb_from_array(array):
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("tile array contains NaN or infinite values")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(f"float tile values must lie in [0, 1]; got {array.min():g}.."
                             f"{array.max():g}")
        array = np.rint(array * 255.0).astype(np.uint8)
    elif array.dtype == np.uint16:
        # The full 16-bit range onto 0..255: 65535 / 257 == 255.
        array = np.rint(array / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(
                f"tile array must be uint8, uint16 (scaled by 1/257), floats in [0, 1] or "
                f"integers in 0..255; got dtype {array.dtype}"
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


def _tile_name(tile, row):
    return str(tile) if isinstance(tile, (str, os.PathLike)) else f"row {row}"


def find_unreadable_tiles(images, *, verbose=0):
    """The tiles of ``images`` that :func:`read_tile` cannot read, found by decoding each.

    Every file is decoded to its end (``PIL.Image.verify`` does not notice a truncated
    JPEG), so this costs one read of every tile.

    Parameters
    ----------
    images : sequence of str, os.PathLike or ndarray
        Tiles, e.g. ``X["image"]``.
    verbose : int, default=0
        Show a progress bar over tiles when > 0.

    Returns
    -------
    bad : list of (int, str, str)
        ``(position, name, reason)`` of each unreadable tile, in order; ``name`` is the
        path, or ``"row <position>"`` for an array. Missing files are listed too.

    Examples
    --------
    >>> import numpy as np
    >>> find_unreadable_tiles([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2))])
    [(1, 'row 1', 'tile array must have shape (H, W), (H, W, 3) or (H, W, 4); got (4, 4, 2)')]
    """
    images = list(images)
    bad = []
    for row, tile in enumerate(tqdm(images, desc="checking tiles", unit="tile",
                                    disable=not verbose)):
        try:
            read_tile(tile)
        except UnreadableTileError as error:
            bad.append((row, _tile_name(tile, row), error.reasons[0]))
        except (FileNotFoundError, ValueError, TypeError) as error:
            bad.append((row, _tile_name(tile, row), " ".join(str(error).split())))
    return bad


def check_tiles(X, *, verbose=0):
    """Check that every tile of ``X`` can be read, naming all the bad ones at once.

    Run it before a long fit or prediction: a single unreadable file would otherwise
    stop the work where it is met.

    Parameters
    ----------
    X : DataFrame with an ``image`` column
    verbose : int, default=0
        Show a progress bar over tiles when > 0.

    Returns
    -------
    X : the same DataFrame

    Raises
    ------
    UnreadableTileError
        If any tile cannot be read; its ``paths``, ``reasons`` and ``rows`` list all of
        them (``X.iloc[error.rows]`` are their rows).

    See Also
    --------
    find_unreadable_tiles : the bad tiles as a list, without raising.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame({"image": [np.zeros((4, 4, 3), np.uint8)]})
    >>> check_tiles(X) is X
    True
    """
    check_image_frame(X)
    bad = find_unreadable_tiles(X[IMAGE_COLUMN], verbose=verbose)
    if bad:
        rows, names, reasons = zip(*bad)
        raise UnreadableTileError(names, reasons, rows)
    return X


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
        digest.update(f"file:v{_DECODER_VERSION}:".encode())
        digest.update(path.read_bytes())
    else:
        array = np.ascontiguousarray(np.asarray(tile))
        digest.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


#: The column in which a tile declares its pixel size, in micrometres per pixel.
MPP_COLUMN = "mpp"


def tile_side(tile):
    """(height, width) of a tile, reading only a file's header.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.data.images import tile_side
    >>> tile_side(np.zeros((32, 48, 3), dtype=np.uint8))
    (32, 48)
    """
    if isinstance(tile, (str, os.PathLike)):
        try:
            with Image.open(tile) as image:
                width, height = image.size
            return height, width
        except (OSError, ValueError):
            # Not for Pillow (a float TIFF, a damaged file): read_tile decodes what it
            # can and raises FileNotFoundError / UnreadableTileError naming the file.
            shape = read_tile(tile).shape
            return int(shape[0]), int(shape[1])
    shape = np.shape(tile)
    return int(shape[0]), int(shape[1])
