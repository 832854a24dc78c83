"""The region of a tile that radiomics describes."""

import numpy as np
from skimage.filters import threshold_otsu

MASKS = ("tissue", "full")

#: A mask smaller than this (pixels, or 2 along an axis) cannot carry shape features.
MIN_MASK_PIXELS = 2


def make_mask(gray, mask):
    """Return a boolean region mask for a tile.

    Parameters
    ----------
    gray : ndarray of shape (H, W)
        The tile's gray channel on a 0..255 scale.
    mask : {"tissue", "full"}
        ``"full"`` is the whole tile (what the paper's code did). ``"tissue"`` keeps the
        pixels darker than Otsu's threshold of the gray channel: stained tissue against
        the bright glass.

    Returns
    -------
    region : ndarray of shape (H, W), dtype bool
    fell_back : bool
        True when the tissue mask was degenerate (a constant tile, fewer than
        :data:`MIN_MASK_PIXELS` pixels, or one row or column only) and the whole tile
        was used instead.
    """
    if mask == "full":
        return np.ones(gray.shape, dtype=bool), False
    if mask != "tissue":
        raise ValueError(f"mask must be one of {MASKS}; got {mask!r}")
    if gray.min() == gray.max():
        return np.ones(gray.shape, dtype=bool), True
    region = gray <= threshold_otsu(gray)
    rows, columns = np.any(region, axis=1), np.any(region, axis=0)
    if region.sum() < MIN_MASK_PIXELS or rows.sum() < 2 or columns.sum() < 2:
        return np.ones(gray.shape, dtype=bool), True
    return region, False
