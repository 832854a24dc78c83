"""Where a slide's tissue is: colour against the glass, pen marks out, specks and holes cleaned.

:func:`detect_tissue` works on an RGB picture of the slide (the thumbnail that
:func:`hiercls.slides.tissue_mask` reads) and takes the clean-up sizes in micrometres, so
that they mean the same on any scanner and thumbnail. The steps:

1. **White balance on the glass.** The glass's colour is the median of the brightest
   pixels; every pixel is divided by it, so that a tinted glass reads as gray.
2. **Stained pixels.** H&E colours tissue, pale necrosis and loose stroma included: a
   saturation above :data:`TISSUE_SATURATION` (glass and its JPEG noise stay below about
   0.015 on the TCIA tiles; pale necrosis has a median near 0.045, which is why a
   threshold by Otsu, that rises with the amount of dense tissue, lost it).
3. **Pen marks out** (:func:`pen_mask`): saturated pixels of a hue H&E never has
   (:data:`PEN_HUES`: green and blue ink; hematoxylin and eosin lie between about 270 and
   360 degrees), and near-black ones (value below :data:`PEN_DARKEST`).
4. **Clean-up** (scikit-image morphology): a closing (:data:`CLOSING_RADIUS_UM`) joins
   the septa of fat and the fibres of loose stroma; holes up to :data:`MAX_HOLE_UM2` (fat
   cells, vessels, tears) are filled; objects below :data:`MIN_OBJECT_UM2` (dust, specks,
   debris) are removed. A glass area as large as a model tile stays glass.
"""

import numbers

import numpy as np
from scipy.ndimage import median_filter
from skimage.color import rgb2hsv
from skimage.morphology import closing, disk, remove_small_holes, remove_small_objects

#: Least saturation (0..1, after white balance on the glass) of a stained pixel.
TISSUE_SATURATION = 0.035

#: Hue ranges (degrees) of ink that H&E never stains: green to blue.
PEN_HUES = ((60.0, 260.0),)

#: Least saturation of a pen pixel within :data:`PEN_HUES`.
PEN_SATURATION = 0.25

#: Value (0..1) below which a pixel is black ink, not stain (H&E on a thumbnail stays above
#: about 0.3).
PEN_DARKEST = 0.2

#: Radius (micrometres) of the closing that joins fat septa and loose fibres.
CLOSING_RADIUS_UM = 20.0

#: Largest hole (square micrometres) filled as tissue: fat cells, vessels, small tears.
MAX_HOLE_UM2 = 1.0e5

#: Smallest object (square micrometres) kept as tissue; smaller ones are specks.
MIN_OBJECT_UM2 = 1.0e4

#: Largest share of a tile that a removed speck may cover: one of the TCIA tiles' 1 mm
#: field of view covers 100 of :data:`MIN_OBJECT_UM2`.
MIN_SPECK_SHARE = 0.01

#: Micrometres per pixel assumed for a picture whose resolution is unknown: about that
#: of a 1,024 px thumbnail of a whole slide.
UNKNOWN_PICTURE_MPP = 25.0

#: Brightest share of the pixels whose median is taken for the glass's colour.
_GLASS_SHARE = 0.1

#: Most saturated "glass" taken as glass; a more coloured one is pale tissue filling the
#: picture, which a white balance on it would turn gray.
_MOST_TINTED_GLASS = 0.08

#: Clusters of at most this many stained pixels, alone, are noise, not stain.
_NOISE_PIXELS = 4

#: A "glass" darker than this gray level (0..255) is tissue filling the picture: no
#: white balance then.
_DARKEST_GLASS = 200.0


def _rgb(picture):
    rgb = np.asarray(picture)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape[:2]:
        raise ValueError(f"picture must be an RGB uint8 array of shape (h, w, 3); got "
                         f"{rgb.dtype} of shape {rgb.shape}")
    return rgb


def glass_colour(picture):
    """The glass's RGB colour: the median of the brightest pixels, or white when those
    are too dark or too coloured to be glass (tissue filling the whole picture)."""
    rgb = _rgb(picture).reshape(-1, 3).astype(float)
    gray = rgb @ np.array([0.299, 0.587, 0.114])
    brightest = gray >= np.quantile(gray, 1.0 - _GLASS_SHARE)
    colour = np.median(rgb[brightest], axis=0)
    if (colour @ np.array([0.299, 0.587, 0.114]) < _DARKEST_GLASS
            or (colour.max() - colour.min()) / colour.max() > _MOST_TINTED_GLASS):
        return np.full(3, 255.0)
    return colour


def _hsv(picture):
    rgb = _rgb(picture)
    # The median colour of each 3 x 3 pixels: a scanner's noise on glass is colour that
    # does not survive it (saturation up to 0.05 per pixel), a stain's does, and so do
    # the edges of tissue (a mean would smear them a pixel into the glass).
    smooth = median_filter(rgb, size=(3, 3, 1), mode="nearest").astype(float)
    balanced = np.clip(smooth * (255.0 / glass_colour(rgb)), 0, 255)
    return rgb2hsv(balanced / 255.0)


def pen_mask(picture):
    """Pixels of pen ink: saturated green or blue (:data:`PEN_HUES`), or near black.

    Parameters
    ----------
    picture : ndarray of uint8, shape (h, w, 3)

    Returns
    -------
    ndarray of bool, shape (h, w)

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.slides.tissue import pen_mask
    >>> picture = np.full((12, 12, 3), 245, np.uint8)
    >>> picture[:4] = (40, 90, 200)      # blue ink
    >>> picture[4:8] = (200, 120, 170)   # eosin
    >>> pen_mask(picture)[[1, 5, 10], 5].tolist()
    [True, False, False]
    """
    return _pen(_hsv(picture))


def _pen(hsv):
    hue, saturation, value = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    inked = np.zeros(hue.shape, dtype=bool)
    for low, high in PEN_HUES:
        inked |= (hue >= low) & (hue < high)
    return (inked & (saturation > PEN_SATURATION)) | (value < PEN_DARKEST)


def _positive(value, name):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive number of micrometres or None; got "
                         f"{value!r}")
    return float(value)


def _pixels(area_um2, mpp):
    return max(1, int(round(area_um2 / mpp ** 2)))


def _without_small(mask, largest, *, holes=False):
    """``mask`` without its objects (or, ``holes=True``, holes) of at most ``largest``
    pixels. scikit-image 0.26 takes ``max_size`` (at most); older ones ``min_size`` and
    ``area_threshold`` (below)."""
    function = remove_small_holes if holes else remove_small_objects
    try:
        return function(mask, max_size=largest)
    except TypeError:  # scikit-image < 0.26
        return function(mask, largest + 1)


def detect_tissue(picture, *, mpp=None, tile_um=None):
    """Tissue on an RGB picture of a slide: stained, not ink, cleaned of specks and holes.

    Parameters
    ----------
    picture : ndarray of uint8, shape (h, w, 3)
        Usually the slide's thumbnail, glass white or light gray.
    mpp : float or None, default=None
        Micrometres per pixel of ``picture``, which sets the clean-up sizes; None
        assumes :data:`UNKNOWN_PICTURE_MPP` (a whole-slide thumbnail).
    tile_um : float or None, default=None
        The side (micrometres) of the tiles the mask is for. The clean-up never works at
        their scale: the closing radius is at most a sixteenth of it, a filled hole at
        most a quarter of a tile (a glass tile amid tissue stays glass) and a removed
        speck at most :data:`MIN_SPECK_SHARE` of one. None: no such bound.

    Returns
    -------
    ndarray of bool, shape (h, w)
        True on tissue. The steps are those of :mod:`hiercls.slides.tissue`.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.slides.tissue import detect_tissue
    >>> picture = np.full((60, 60, 3), 245, np.uint8)
    >>> picture[10:50, 10:50] = (225, 190, 215)   # pale eosin, 40 x 40 px
    >>> picture[55, 55] = (60, 40, 80)            # a speck
    >>> mask = detect_tissue(picture, mpp=10.0)
    >>> bool(mask[10:50, 10:50].mean() > 0.99), bool(mask[55, 55])
    (True, False)
    """
    hsv = _hsv(picture)
    mpp = UNKNOWN_PICTURE_MPP if mpp is None else _positive(mpp, "mpp")
    closing_um, hole_um2, speck_um2 = CLOSING_RADIUS_UM, MAX_HOLE_UM2, MIN_OBJECT_UM2
    if tile_um is not None:
        tile_um = _positive(tile_um, "tile_um")
        closing_um = min(closing_um, tile_um / 16)
        hole_um2 = min(hole_um2, tile_um ** 2 / 4)
        speck_um2 = min(speck_um2, MIN_SPECK_SHARE * tile_um ** 2)
    pen = _pen(hsv)
    stained = (hsv[..., 1] > TISSUE_SATURATION) & ~pen
    # Before the closing joins them: lone clusters of a few pixels are noise at any scale.
    stained = _without_small(stained, _NOISE_PIXELS)
    radius = int(round(closing_um / mpp))
    if radius >= 1:
        # Pad with glass so that the closing does not pull tissue off the picture's edges.
        padded = np.pad(stained, radius)
        stained = closing(padded, disk(radius)).astype(bool)[radius:-radius, radius:-radius]
    stained = _without_small(stained, _pixels(hole_um2, mpp), holes=True)
    # Ink is never tissue, even where the closing or a filled hole reached over it.
    stained &= ~pen
    return _without_small(stained, _pixels(speck_um2, mpp) - 1)
