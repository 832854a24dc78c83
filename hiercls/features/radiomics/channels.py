"""The single intensity channel that radiomics is computed on."""

import numpy as np
from skimage.color import rgb2hed

CHANNELS = ("gray", "hematoxylin")

# rgb2hed's hematoxylin optical density of a black pixel: the scale that maps the
# hematoxylin channel onto the same 0..255 range as the gray channel, so one binWidth
# suits both.
_HEMATOXYLIN_OF_BLACK = float(rgb2hed(np.zeros((1, 1, 3)))[0, 0, 0])


def to_channel(rgb, channel):
    """Return one float64 channel of an RGB uint8 tile, on a 0..255 scale.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8
    channel : {"gray", "hematoxylin"}
        ``"gray"`` is the ITU-R BT.601 luma (PIL's "L" conversion, not rounded).
        ``"hematoxylin"`` is the hematoxylin optical density of Ruifrok and Johnston's
        colour deconvolution (:func:`skimage.color.rgb2hed`), scaled so that a black pixel
        gives 255 and clipped to [0, 255]: high values are nuclei.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    >>> to_channel(rgb, "gray")
    array([[255.,   0.]])
    >>> to_channel(rgb, "hematoxylin").round(1)
    array([[  0., 255.]])
    """
    if channel == "gray":
        weights = np.array([299.0, 587.0, 114.0]) / 1000.0
        return rgb.astype(np.float64) @ weights
    if channel == "hematoxylin":
        density = rgb2hed(rgb)[:, :, 0]
        return np.clip(density * (255.0 / _HEMATOXYLIN_OF_BLACK), 0.0, 255.0)
    raise ValueError(f"channel must be one of {CHANNELS}; got {channel!r}")
