"""The region of a tile that radiomics describes."""

import numpy as np
from skimage.filters import threshold_otsu

MASKS = ("tissue", "full", "nuclei")

#: The channel each thresholded mask is drawn from (``"full"`` needs none).
MASK_CHANNEL = {"tissue": "gray", "nuclei": "hematoxylin"}

#: A mask smaller than this (pixels, or 2 along an axis) cannot carry shape features.
MIN_MASK_PIXELS = 2


def make_mask(gray, mask, *, hematoxylin=None):
    """Return a boolean region mask for a tile.

    Parameters
    ----------
    gray : ndarray of shape (H, W)
        The tile's gray channel on a 0..255 scale.
    mask : {"tissue", "full", "nuclei"}
        ``"full"`` is the whole tile (what the paper's code did). ``"tissue"`` keeps the
        pixels darker than Otsu's threshold of the gray channel: stained tissue against
        the bright glass. ``"nuclei"`` keeps the pixels whose hematoxylin density is above
        Otsu's threshold of the hematoxylin channel: the nuclei, whose number, size and
        shape separate viable tumor from necrosis and normal tissue.
    hematoxylin : ndarray of shape (H, W), optional
        The hematoxylin channel (:func:`hiercls.features.radiomics.channels.to_channel`); required
        for ``"nuclei"``.

    Returns
    -------
    region : ndarray of shape (H, W), dtype bool
    fell_back : bool
        True when the thresholded mask was degenerate (a constant channel, fewer than
        :data:`MIN_MASK_PIXELS` pixels, or one row or column only) and the whole tile
        was used instead.

    Examples
    --------
    Dark tissue in the middle of bright glass:

    >>> import numpy as np
    >>> gray = np.full((32, 32), 230.0)
    >>> gray[8:24, 8:24] = 90.0
    >>> region, fell_back = make_mask(gray, "tissue")
    >>> int(region.sum()), fell_back
    (256, False)
    >>> region, fell_back = make_mask(np.full((32, 32), 200.0), "tissue")
    >>> bool(region.all()), fell_back
    (True, True)
    """
    if mask == "full":
        return np.ones(gray.shape, dtype=bool), False
    if mask == "tissue":
        return _thresholded(gray, above=False)
    if mask == "nuclei":
        if hematoxylin is None:
            raise ValueError("the 'nuclei' mask needs the tile's hematoxylin channel")
        return _thresholded(hematoxylin, above=True)
    raise ValueError(f"mask must be one of {MASKS}; got {mask!r}")


def _thresholded(channel, *, above):
    """Pixels on one side of the channel's Otsu threshold, or the whole tile if degenerate."""
    whole = np.ones(channel.shape, dtype=bool)
    if channel.min() == channel.max():
        return whole, True
    threshold = threshold_otsu(channel)
    region = channel > threshold if above else channel <= threshold
    rows, columns = np.any(region, axis=1), np.any(region, axis=0)
    if region.sum() < MIN_MASK_PIXELS or rows.sum() < 2 or columns.sum() < 2:
        return whole, True
    return region, False
