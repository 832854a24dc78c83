"""Deterministic perturbations of uint8 RGB tiles: stain, focus and compression.

The three ways a tile of the same tissue differs between labs and scanners: the stain
uptake (:func:`stain_shift`), the focus of the optics (:func:`gaussian_blur`) and the
compression of the scan (:func:`jpeg_recompress`). They serve as augmentation (the
frozen backbone's cached views, ``view_blur`` and ``view_jpeg`` of
:class:`hiercls.HierarchicalFusionClassifier`) and as robustness tests (how far the
predictions move under each of them). Each takes and returns a uint8 ``(H, W, 3)`` array
and leaves its input untouched; the same arguments give the same pixels.
"""

import io
import numbers

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..nn.stain_jitter import hed_jitter
from ..validation import check_number

#: The highest JPEG quality accepted; above it, PIL's encoder mostly grows the file.
MAX_JPEG_QUALITY = 95


def _check_tile(tile):
    if not isinstance(tile, np.ndarray):
        raise TypeError(f"tile must be a numpy array; got {type(tile).__name__}")
    if tile.dtype != np.uint8:
        raise TypeError(f"tile must be uint8 RGB (H, W, 3); got dtype {tile.dtype}")
    if tile.ndim != 3 or tile.shape[2] != 3:
        raise ValueError(f"tile must be uint8 RGB of shape (H, W, 3); got shape {tile.shape}")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _torch_generator(rng):
    if isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, np.random.Generator):
        return torch.Generator().manual_seed(int(rng.integers(2 ** 63 - 1)))
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        return torch.Generator().manual_seed(int(rng))
    raise TypeError("rng must be an int seed, a numpy Generator or a torch Generator; "
                    f"got {type(rng).__name__}")


def stain_shift(tile, strength, rng):
    """Scale and shift the tile's hematoxylin, eosin and DAB densities by random factors.

    :func:`hiercls.nn.stain_jitter.hed_jitter` on the tile's [0, 1] intensities: each
    stain's optical density ``d`` becomes ``d * a + b`` with ``a ~ U(1 - strength,
    1 + strength)`` and ``b ~ U(-strength, strength)``.

    Parameters
    ----------
    tile : ndarray of shape (H, W, 3), uint8
    strength : float in [0, 1)
        ``sigma`` of ``hed_jitter`` (0.05 is Tellez et al.'s "HED-light"); 0 returns a
        copy of the tile.
    rng : int, numpy.random.Generator or torch.Generator
        Source of the two random factors per stain; an int seeds a fresh generator.

    Returns
    -------
    shifted : ndarray of shape (H, W, 3), uint8

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.random.default_rng(0).integers(60, 200, (16, 16, 3), dtype=np.uint8)
    >>> shifted = stain_shift(tile, 0.05, rng=1)
    >>> shifted.dtype, shifted.shape, bool((shifted != tile).any())
    (dtype('uint8'), (16, 16, 3), True)
    >>> bool((stain_shift(tile, 0.05, rng=1) == shifted).all())  # the same seed, the same shift
    True
    >>> bool((stain_shift(tile, 0.0, rng=1) == tile).all())
    True
    """
    _check_tile(tile)
    if not (_is_real(strength) and 0 <= strength < 1):
        raise ValueError(f"strength must be a number in [0, 1); got {strength!r}")
    generator = _torch_generator(rng)
    if strength == 0:
        return tile.copy()
    # A copy: torch wants a writable array (a decoded tile may be read-only).
    rgb = torch.from_numpy(np.array(tile, copy=True)).permute(2, 0, 1)[None].double() / 255.0
    shifted = hed_jitter(rgb, float(strength), generator)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(shifted * 255.0), 0, 255).astype(np.uint8)


def gaussian_blur(tile, sigma):
    """Blur each channel of the tile with a Gaussian of ``sigma`` pixels.

    Stands for a scan slightly out of focus. The border is mirrored
    (:func:`scipy.ndimage.gaussian_filter`, ``mode="reflect"``), the result rounded.

    Parameters
    ----------
    tile : ndarray of shape (H, W, 3), uint8
    sigma : float >= 0
        Standard deviation in pixels of the tile as given; 0 returns a copy.

    Returns
    -------
    blurred : ndarray of shape (H, W, 3), uint8

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.zeros((9, 9, 3), dtype=np.uint8)
    >>> tile[4, 4] = 255
    >>> blurred = gaussian_blur(tile, 1.0)
    >>> int(blurred[4, 4, 0]), int(blurred[4, 5, 0]), int(blurred[0, 0, 0])
    (41, 25, 0)
    >>> bool((gaussian_blur(tile, 0.0) == tile).all())
    True
    """
    _check_tile(tile)
    if not (_is_real(sigma) and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0 (pixels); got {sigma!r}")
    if sigma == 0:
        return tile.copy()
    # In float and rounded: scipy's uint8 output would truncate, darkening the tile.
    blurred = gaussian_filter(tile.astype(np.float32), sigma=(float(sigma), float(sigma), 0.0),
                              mode="reflect")
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def jpeg_recompress(tile, quality):
    """The tile after a round trip through JPEG at ``quality``, in memory.

    PIL's encoder with its default chroma subsampling (4:2:0), as scanners' and viewers'
    exports mostly are. JPEG is lossy at every quality: even 95 changes a few pixel
    values slightly.

    Parameters
    ----------
    tile : ndarray of shape (H, W, 3), uint8
    quality : int in 1..95
        PIL's JPEG quality; lower is coarser.

    Returns
    -------
    recompressed : ndarray of shape (H, W, 3), uint8

    Examples
    --------
    >>> import numpy as np
    >>> tile = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    >>> coarse, fine = jpeg_recompress(tile, 10), jpeg_recompress(tile, 95)
    >>> coarse.shape, coarse.dtype
    ((32, 32, 3), dtype('uint8'))
    >>> def error(image):
    ...     return float(np.abs(image.astype(int) - tile).mean())
    >>> error(coarse) > error(fine)
    True
    >>> bool((jpeg_recompress(tile, 10) == coarse).all())  # deterministic
    True
    """
    _check_tile(tile)
    check_number(quality, "quality", integer=True, low=1, high=MAX_JPEG_QUALITY,
                 expected=f"an int in 1..{MAX_JPEG_QUALITY}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(tile)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()
