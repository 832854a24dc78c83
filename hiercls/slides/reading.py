"""Opening a slide, its resolution, where its tissue is, and its tiles.

See :mod:`hiercls.slides` for the steps."""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.images import read_tile
from ..exceptions import ResolutionMismatchWarning, SlideReadError  # noqa: F401  (its home before)
from ..features.resolution import DEFAULT_RESOLUTION, MPP_COLUMN, resample_tile
from ..validation import check_number
from .tissue import detect_tissue

# The TCIA figures and where they come from: hiercls.features.resolution (one place).

#: Long side (px) of the thumbnail tissue is detected on.
TISSUE_THUMBNAIL = 1024

#: How many times finer than a tile's pixels the pyramid level it is read from is, at
#: least (where the slide has one): the last factor of the downsampling is always the
#: package's own (:func:`_level_for`).
LEVEL_OVERSAMPLING = 2.0

#: Least tissue fraction of a tile's footprint for the tile to be read (``min_tissue``).
#: Each of the 1,144 TCIA tiles, which pathologists chose as tissue, holds more (some are
#: mostly fat or glass) but one, glass with a speck of dust; glass, specks and pen marks
#: hold none once cleaned (tests/slides/test_tissue.py).
MIN_TISSUE = 0.01




# --------------------------------------------------------------------------------------
# Opening slides and their resolution

def _openslide():
    try:
        import openslide
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("reading slides needs OpenSlide: pip install 'hiercls[slides]' "
                          "(openslide-python and openslide-bin)") from error
    return openslide


def open_slide(slide):
    """Open a whole-slide image with OpenSlide.

    Parameters
    ----------
    slide : str, os.PathLike or openslide.OpenSlide
        A slide file (SVS, NDPI, MRXS, tiled TIFF, ...), or a slide already open (returned
        as it is).

    Returns
    -------
    openslide.OpenSlide

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    SlideReadError
        If the file is not a slide OpenSlide can read.
    """
    openslide = _openslide()
    if isinstance(slide, openslide.AbstractSlide):
        return slide
    if not isinstance(slide, (str, os.PathLike)):
        raise TypeError(f"slide must be a path or an openslide.OpenSlide; got {type(slide).__name__}")
    path = Path(slide).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"slide {str(path)!r} does not exist")
    if path.is_dir():
        raise SlideReadError(f"slide {str(path)!r} is a folder; expected a slide file")
    try:
        return openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as error:
        raise SlideReadError(f"slide {str(path)!r} is not a slide OpenSlide can read "
                             f"(SVS, NDPI, MRXS, SCN, tiled TIFF, ...): "
                             f"{type(error).__name__}: {' '.join(str(error).split())}") from None


def _name(slide):
    filename = getattr(slide, "_filename", None)
    return str(filename) if filename else repr(slide)


def _check_positive(value, name, *, integer=False):
    return check_number(value, name, integer=integer, low=0, closed="neither",
                        expected="a positive int" if integer else "a positive number")


def slide_mpp(slide, mpp=None):
    """Micrometres per level-0 pixel of a slide.

    Parameters
    ----------
    slide : path or openslide.OpenSlide
    mpp : float or None, default=None
        The slide's resolution when known from elsewhere; it overrides the file's.

    Returns
    -------
    float
        ``mpp`` if given, else OpenSlide's ``openslide.mpp-x`` (from the vendor's
        metadata or, for a generic TIFF, its resolution tags).

    Raises
    ------
    ValueError
        If neither ``mpp`` nor the file gives the resolution.
    """
    if mpp is not None:
        return _check_positive(mpp, "slide_mpp")
    slide = open_slide(slide)
    value = slide.properties.get("openslide.mpp-x")
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = None
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"slide {_name(slide)!r} does not declare its resolution "
                         "(no openslide.mpp-x property); pass slide_mpp= (micrometres per "
                         "level-0 pixel)")
    return value


# The functions below take a ``slide_mpp`` argument, which hides the function's name.
_level0_mpp = slide_mpp



# --------------------------------------------------------------------------------------
# The model's resolution

def model_resolution(pipeline):
    """The resolution a fitted pipeline declares it was trained at, or None.

    A pipeline (or any of its steps) declares it with a fitted attribute
    ``training_resolution_ = (mpp, tile_size)``: micrometres per pixel and the side of the
    training tiles in pixels. The slide functions take the model's field of view from it.

    Returns
    -------
    (float, int) or None

    Examples
    --------
    >>> from hiercls import make_fusion_pipeline
    >>> from hiercls.slides import model_resolution
    >>> print(model_resolution(make_fusion_pipeline()))
    None
    """
    step = _resolution_step(pipeline)
    if step is None:
        return None
    mpp, tile_size = step.training_resolution_
    return (_check_positive(mpp, "training_resolution_ mpp"),
            _check_positive(tile_size, "training_resolution_ tile_size", integer=True))


def _resolution_step(pipeline):
    candidates = [pipeline, *[step for _, step in getattr(pipeline, "steps", [])]]
    for candidate in candidates:
        if getattr(candidate, "training_resolution_", None) is not None:
            return candidate
    return None


def _mpp_known(step):
    """Whether a resolution step's training mpp was declared (tiles or ``mpp=``), not
    :data:`DEFAULT_RESOLUTION`'s assumed one."""
    return getattr(step, "mpp_declared_", True) or getattr(step, "mpp", None) is not None


def resolve_model_resolution(pipeline, mpp=None, tile_size=None):
    """The model resolution the slide functions use: (mpp, tile_size).

    Each of ``mpp`` and ``tile_size`` is the argument when given, else what ``pipeline``
    declares (:func:`model_resolution`), else :data:`DEFAULT_RESOLUTION`'s.

    Raises
    ------
    ValueError
        If ``mpp`` is None and the pipeline's resolution step was trained on tiles that
        declared no mpp: its resolution is unknown, and assuming one would read every
        tile at a field of view the model never saw.

    Examples
    --------
    >>> from hiercls.slides import resolve_model_resolution
    >>> resolve_model_resolution(None)
    (2.0, 512)
    >>> resolve_model_resolution(None, mpp=1.0, tile_size=1024)
    (1.0, 1024)
    """
    declared = model_resolution(pipeline) if pipeline is not None else None
    if mpp is None and declared is not None and not _mpp_known(_resolution_step(pipeline)):
        raise ValueError(
            "the pipeline was trained on tiles that declared no resolution (no 'mpp' column "
            "or X.attrs['mpp']), so its micrometres per pixel are unknown; pass mpp= (the CLI's "
            "--mpp) with the training tiles' resolution, or refit with it declared. --slide-mpp "
            "/ slide_mpp= is the slide's own level-0 resolution, not the model's")
    default_mpp, default_size = declared or DEFAULT_RESOLUTION
    mpp = default_mpp if mpp is None else mpp
    tile_size = default_size if tile_size is None else tile_size
    return _check_positive(mpp, "mpp"), _check_positive(tile_size, "tile_size", integer=True)



# --------------------------------------------------------------------------------------
# Tissue and the grid

def tissue_mask(slide, *, size=TISSUE_THUMBNAIL, slide_mpp=None, tile_um=None):
    """The slide's tissue on a thumbnail.

    Parameters
    ----------
    slide : path or openslide.OpenSlide
    size : int, default=TISSUE_THUMBNAIL
        Long side of the thumbnail in pixels.
    slide_mpp : float or None, default=None
        The slide's level-0 resolution when the file does not declare it; it sets the
        clean-up sizes in micrometres. Unknown, the thumbnail is taken at
        :data:`~hiercls.slides.tissue.UNKNOWN_PICTURE_MPP`.
    tile_um : float or None, default=None
        The model tiles' side in micrometres, which bounds the clean-up sizes
        (:func:`~hiercls.slides.tissue.detect_tissue`); :func:`tile_grid` passes it.

    Returns
    -------
    mask : ndarray of bool, shape (h, w)
        True on tissue (:func:`~hiercls.slides.tissue.detect_tissue`): stained pixels
        against the glass's own colour, pen marks out, holes up to the size of fat cells
        filled, specks removed.
    thumbnail : ndarray of uint8, shape (h, w, 3)
        The RGB thumbnail (background composited on white).

    Notes
    -----
    The ``"tissue"`` radiomics mask (Otsu of the gray level,
    :func:`hiercls.features.radiomics.masks.make_mask`) separates dark from light *within* a tile;
    on a slide it also cuts away pale necrosis, whose gray level lies near the glass,
    and losing necrosis would bias the necrotic fraction. Stained tissue, pale or not,
    is coloured while glass is gray, so saturation separates them; a threshold that
    follows the slide (Otsu of the saturation) rose with the dense tissue and, with the
    former ``min_tissue=0.5``, lost 455 of the 1,144 TCIA tiles (pale necrosis, loose
    stroma, fat) on slides assembled from them, so it is fixed.
    """
    slide = open_slide(slide)
    size = _check_positive(size, "size", integer=True)
    try:
        thumbnail = slide.get_thumbnail((size, size)).convert("RGB")
    except _openslide().OpenSlideError as error:
        raise SlideReadError(f"slide {_name(slide)!r}: reading its thumbnail failed: "
                             f"{' '.join(str(error).split())}") from None
    rgb = np.asarray(thumbnail, dtype=np.uint8)
    try:
        level0 = _level0_mpp(slide, slide_mpp)
    except ValueError:
        if slide_mpp is not None:   # given, and not a resolution: say so
            raise
        picture_mpp = None          # unknown: the clean-up takes a whole slide's thumbnail
    else:
        picture_mpp = level0 * max(slide.dimensions[0] / rgb.shape[1],
                                   slide.dimensions[1] / rgb.shape[0])
    return detect_tissue(rgb, mpp=picture_mpp, tile_um=tile_um), rgb


def tile_grid(slide, *, mpp=None, tile_size=None, slide_mpp=None, min_tissue=MIN_TISSUE,
              pipeline=None):
    """The tissue tiles of a slide: where they lie, before any pixel is read.

    Parameters
    ----------
    slide : path or openslide.OpenSlide
    mpp, tile_size : float and int, or None
        The model's resolution (micrometres per pixel) and tile side (pixels); None takes
        them from ``pipeline`` (:func:`model_resolution`) or :data:`DEFAULT_RESOLUTION`.
    slide_mpp : float or None, default=None
        The slide's level-0 resolution, if the file does not declare it.
    min_tissue : float, default=MIN_TISSUE
        Least tissue fraction of a tile's footprint on the thumbnail, in (0, 1].
    pipeline : estimator or None, default=None
        Where ``mpp`` and ``tile_size`` come from when not given.

    Returns
    -------
    DataFrame
        One row per tissue tile, in reading order (rows top to bottom, left to right):
        ``x``, ``y`` (int, level-0 top-left corner), ``extent`` (float, side in level-0
        pixels) and ``tissue`` (its tissue fraction).
    """
    slide = open_slide(slide)
    mpp, tile_size = resolve_model_resolution(pipeline, mpp, tile_size)
    check_number(min_tissue, "min_tissue", low=0.0, high=1.0, closed="right")
    extent = tile_size * mpp / _level0_mpp(slide, slide_mpp)
    width, height = slide.dimensions
    columns, rows = int(width // extent), int(height // extent)
    empty = pd.DataFrame({"x": pd.Series(dtype=np.int64), "y": pd.Series(dtype=np.int64),
                          "extent": pd.Series(dtype=float), "tissue": pd.Series(dtype=float)})
    if columns == 0 or rows == 0:
        return empty
    mask, _ = tissue_mask(slide, slide_mpp=slide_mpp, tile_um=tile_size * mpp)
    scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width
    # Tissue fraction of every footprint from an integral image of the mask.
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    xs = np.round(np.arange(columns) * extent).astype(np.int64)
    ys = np.round(np.arange(rows) * extent).astype(np.int64)

    def bounds(starts, scale, limit):
        low = np.clip(np.round(starts * scale), 0, limit - 1).astype(np.int64)
        high = np.clip(np.round((starts + extent) * scale), low + 1, limit).astype(np.int64)
        # The thumbnail's resampling smears a neighbour's tissue one pixel into a glass
        # tile: a fortieth of a tile per side on a whole slide's thumbnail (about 40 px a
        # tile), above MIN_TISSUE. So the footprint leaves out its outer pixel where wide.
        wide = high - low >= 6
        return low + wide, high - wide

    x0, x1 = bounds(xs, scale_x, mask.shape[1])
    y0, y1 = bounds(ys, scale_y, mask.shape[0])
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    inside = (integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0]
              + integral[y0][:, x0])
    fraction = inside / area
    r, c = np.nonzero(fraction >= min_tissue)
    if r.size == 0:
        return empty
    return pd.DataFrame({"x": xs[c], "y": ys[r], "extent": np.full(r.size, extent),
                         "tissue": fraction[r, c]})


# --------------------------------------------------------------------------------------
# Reading tiles

def _level_for(slide, downsample):
    """The level a tile of ``downsample`` (level-0 pixels per tile pixel) is read from:
    the coarsest one at least :data:`LEVEL_OVERSAMPLING` times finer, else level 0.

    A level at the model's own resolution is not read as it is: it was made by whatever
    built the pyramid (a scanner's filter, a subsampling that aliases), not by the
    antialiased Lanczos that made the training tiles and that resamples declared tiles.
    Read finer and resampled by :func:`~hiercls.features.resolution.resample_tile`, a
    slide's tiles are the ones a tile file at that resolution would give. A slide whose
    level 0 is at the model's resolution is read unchanged.
    """
    levels = np.asarray(slide.level_downsamples, dtype=float)
    # Scanners round their downsamples (4.0002 for a 4x level of an SVS): 1 % slack.
    fine_enough = np.flatnonzero(levels <= downsample / LEVEL_OVERSAMPLING * (1 + 1e-2))
    return int(fine_enough[-1]) if fine_enough.size else 0


def _read_tile(slide, x, y, extent, tile_size):
    level = _level_for(slide, extent / tile_size)
    downsample = float(slide.level_downsamples[level])
    side = max(1, int(round(extent / downsample)))
    try:
        region = slide.read_region((int(x), int(y)), level, (side, side))
    except _openslide().OpenSlideError as error:
        raise SlideReadError(f"slide {_name(slide)!r}: reading the tile at ({x}, {y}) failed: "
                             f"{' '.join(str(error).split())}") from None
    rgb = read_tile(region)  # RGBA -> RGB, transparent areas on white like the glass
    # The pipeline's own resampling, so that slide and file tiles are resampled alike.
    return resample_tile(rgb, size=tile_size)


def iter_tile_batches(slide, *, mpp=None, tile_size=None, batch_size=64, slide_mpp=None,
                      min_tissue=MIN_TISSUE, pipeline=None, grid=None):
    """Yield the slide's tissue tiles in batches, as ``X`` DataFrames.

    Parameters
    ----------
    slide : path or openslide.OpenSlide
    mpp, tile_size, slide_mpp, min_tissue, pipeline
        As in :func:`tile_grid`.
    batch_size : int, default=64
        Tiles per batch; memory is bounded by one batch of images.
    grid : DataFrame or None, default=None
        The grid to read (from :func:`tile_grid`); None computes it.

    Yields
    ------
    DataFrame
        Columns ``image`` (RGB uint8 arrays of ``tile_size`` px), ``x``, ``y``, ``extent``,
        ``tissue``, ``mpp`` (the tiles' pixel size: the model's ``mpp``); indexed by the tile's position in the grid.
    """
    slide = open_slide(slide)
    mpp, tile_size = resolve_model_resolution(pipeline, mpp, tile_size)
    batch_size = _check_positive(batch_size, "batch_size", integer=True)
    if grid is None:
        grid = tile_grid(slide, mpp=mpp, tile_size=tile_size, slide_mpp=slide_mpp,
                         min_tissue=min_tissue)
    grid = grid.reset_index(drop=True)
    for start in range(0, len(grid), batch_size):
        part = grid.iloc[start:start + batch_size]
        images = [_read_tile(slide, x, y, e, tile_size)
                  for x, y, e in zip(part["x"], part["y"], part["extent"])]
        batch = part.copy()
        batch.insert(0, "image", pd.Series(images, index=part.index, dtype=object))
        # Read at the model's resolution; declared, so that TileResampler leaves them be.
        batch[MPP_COLUMN] = float(mpp)
        yield batch


def slide_tiles(slide, *, mpp=None, tile_size=None, slide_mpp=None, min_tissue=MIN_TISSUE,
                pipeline=None):
    """All tissue tiles of a slide as one ``X`` DataFrame (for slides that fit in memory).

    Parameters are those of :func:`iter_tile_batches`; :func:`predict_slide` streams
    instead.

    Returns
    -------
    DataFrame
        The usual ``X``: columns ``image`` (RGB arrays) and ``mpp`` (the pixel size they
        were read at), one row per tissue tile, indexed by the level-0 top-left corner
        (a MultiIndex ``x``, ``y``). A fitted :func:`~hiercls.make_fusion_pipeline`
        predicts on it as it is, ``pipeline.predict_proba(tiles)``, which is why the grid's
        other columns are not columns here: ``attrs["extent"]`` is the tiles' side in
        level-0 pixels, and :func:`tile_grid` gives each tile's tissue fraction.
    """
    mpp, tile_size = resolve_model_resolution(pipeline, mpp, tile_size)
    slide = open_slide(slide)
    grid = tile_grid(slide, mpp=mpp, tile_size=tile_size, slide_mpp=slide_mpp,
                     min_tissue=min_tissue)
    batches = list(iter_tile_batches(slide, mpp=mpp, tile_size=tile_size, batch_size=256,
                                     grid=grid))
    frame = (pd.concat(batches) if batches else
             grid.assign(image=pd.Series(dtype=object), **{MPP_COLUMN: pd.Series(dtype=float)}))
    X = frame.set_index(["x", "y"])[["image", MPP_COLUMN]]
    X.attrs.update(extent=tile_size * mpp / _level0_mpp(slide, slide_mpp), mpp=mpp,
                   tile_size=tile_size)
    return X


