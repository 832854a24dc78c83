"""From a whole slide to tiles, predictions, necrosis and maps.

A whole-slide image is read with OpenSlide (``openslide-python`` with the ``openslide-bin``
wheels: no system library to install). OpenSlide is the field's reader because it opens
the formats pathology departments actually have: Aperio SVS, Hamamatsu NDPI and VMS,
3DHISTECH MRXS, Leica SCN, Philips TIFF, Ventana BIF, Sakura SVSlide, DICOM WSI and
generic tiled TIFF. ``tiffslide`` reads only the TIFF-based ones (no MRXS, VMS or DICOM),
so it would leave some scanners' slides out.

The steps:

1. **Tissue** is found on a thumbnail (at most :data:`TISSUE_THUMBNAIL` px on its long
   side, read from a low pyramid level): coloured pixels (saturation above Otsu's
   threshold, held within :data:`SATURATION_RANGE`) that are darker than
   :data:`GLASS_GRAY`. :func:`tissue_mask` says why not the gray-level Otsu rule of the
   radiomics ``"tissue"`` mask.
2. **A grid** of tiles of the model's field of view (``tile_size`` px at ``mpp``
   micrometres per pixel: ``tile_size * mpp / slide_mpp`` level-0 pixels) is laid over
   the slide, non-overlapping and starting at its origin; only whole tiles are taken, and
   only those whose footprint on the thumbnail is at least ``min_tissue`` tissue.
3. **Regions** are read from the coarsest pyramid level that is still at least as fine as
   the model's resolution, then resampled (Lanczos) to ``tile_size`` px; a region read at
   exactly the model's resolution is passed on unchanged.
4. **Batches** of tiles (:func:`iter_tile_batches`) are the usual ``X`` DataFrame: an
   ``image`` column of RGB arrays, plus ``x``, ``y`` (level-0 coordinates of the
   top-left corner), ``extent`` (the tile's side in level-0 pixels) and ``tissue`` (its
   tissue fraction). Any fitted pipeline predicts on them unchanged, and memory stays
   bounded by one batch.

The model's resolution
    :func:`model_resolution` reads what a fitted pipeline declares: a fitted attribute
    ``training_resolution_ = (mpp, tile_size)`` on the pipeline or one of its steps (the
    :class:`~hiercls.features.resolution.TileResampler` of :func:`~hiercls.make_fusion_pipeline`
    records it in ``fit``). A pipeline whose training tiles declared no mpp (no ``mpp``
    column, no ``X.attrs["mpp"]``, no ``TileResampler(mpp=...)``) knows its tile side but
    not its resolution: the slide functions then require ``mpp=`` (the CLI's ``--mpp``)
    rather than guess, since a wrong guess changes the field of view of every tile.
    A pipeline without any such step falls back to :data:`DEFAULT_RESOLUTION`, that of
    the TCIA Osteosarcoma-UT tiles (see there). ``mpp=`` and ``tile_size=`` override the
    model's, with a :class:`ResolutionMismatchWarning` where they disagree with it.
"""

import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from skimage.filters import threshold_otsu
from tqdm.auto import tqdm

from ..data.images import read_tile
from ..data.labels import CLASS_NAMES
from ..evaluation.necrosis import GOOD_RESPONSE, MIN_TUMOR_TILES, necrosis_from_probabilities
from ..features.resolution import (DEFAULT_RESOLUTION, MPP_COLUMN, TCIA_ORIGINAL_RESOLUTION, TileResampler,
                         resample_tile)

__all__ = [
    "DEFAULT_RESOLUTION",
    "GLASS_GRAY",
    "SATURATION_RANGE",
    "ResolutionMismatchWarning",
    "SlideReadError",
    "TCIA_ORIGINAL_RESOLUTION",
    "TISSUE_THUMBNAIL",
    "iter_tile_batches",
    "model_resolution",
    "open_slide",
    "patient_necrosis",
    "plot_slide_heatmap",
    "plot_slide_overlay",
    "predict_slide",
    "predict_slides",
    "resolve_model_resolution",
    "slide_mpp",
    "slide_necrosis",
    "slide_tiles",
    "tile_grid",
    "tissue_mask",
    "write_slide_report",
]

# The TCIA figures and where they come from: hiercls.features.resolution (one place).


#: Long side (px) of the thumbnail tissue is detected on.
TISSUE_THUMBNAIL = 1024

#: Gray level (0..255) at or above which a thumbnail pixel is glass, never tissue.
GLASS_GRAY = 235

#: The range Otsu's threshold of the colour saturation (0..1) is held within: glass is
#: nearly gray (saturation below about 0.05 on scanned slides), pale eosin well above 0.1.
SATURATION_RANGE = (0.04, 0.10)

_GATE_COLUMNS = ("gate_image", "gate_radiomics")


class SlideReadError(OSError):
    """A slide file that exists but cannot be read (unsupported format, corrupt data)."""


class ResolutionMismatchWarning(UserWarning):
    """Slide tiles asked for at another resolution or side than the model was trained on."""


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
    kind = numbers.Integral if integer else numbers.Real
    if (not isinstance(value, kind) or isinstance(value, bool) or not np.isfinite(value)
            or value <= 0):
        expected = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return int(value) if integer else float(value)


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

def tissue_mask(slide, *, size=TISSUE_THUMBNAIL):
    """The slide's tissue on a thumbnail.

    Parameters
    ----------
    slide : path or openslide.OpenSlide
    size : int, default=TISSUE_THUMBNAIL
        Long side of the thumbnail in pixels.

    Returns
    -------
    mask : ndarray of bool, shape (h, w)
        True on tissue: a colour saturation above Otsu's threshold of the thumbnail's
        saturation, that threshold held within :data:`SATURATION_RANGE`, and a gray level
        below :data:`GLASS_GRAY`.
    thumbnail : ndarray of uint8, shape (h, w, 3)
        The RGB thumbnail (background composited on white).

    Notes
    -----
    The ``"tissue"`` radiomics mask (Otsu of the gray level,
    :func:`hiercls.features.radiomics.masks.make_mask`) separates dark from light *within* a tile;
    on a slide it also cuts away pale necrosis, whose gray level lies near the glass
    (a generated Non-Viable-Tumor tile of mean gray 211 fell below Otsu's 202 on a test
    slide), and losing necrosis would bias the necrotic fraction. Stained tissue, pale or
    not, is coloured while glass is gray, so saturation separates them.
    """
    slide = open_slide(slide)
    size = _check_positive(size, "size", integer=True)
    try:
        thumbnail = slide.get_thumbnail((size, size)).convert("RGB")
    except _openslide().OpenSlideError as error:
        raise SlideReadError(f"slide {_name(slide)!r}: reading its thumbnail failed: "
                             f"{' '.join(str(error).split())}") from None
    rgb = np.asarray(thumbnail, dtype=np.uint8)
    gray = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    brightest = rgb.max(axis=2).astype(float)
    saturation = np.divide(brightest - rgb.min(axis=2), brightest,
                           out=np.zeros_like(brightest), where=brightest > 0)
    low, high = SATURATION_RANGE
    threshold = (high if saturation.min() == saturation.max()
                 else float(np.clip(threshold_otsu(saturation), low, high)))
    return (saturation > threshold) & (gray < GLASS_GRAY), rgb


def tile_grid(slide, *, mpp=None, tile_size=None, slide_mpp=None, min_tissue=0.5,
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
    min_tissue : float, default=0.5
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
    if (not isinstance(min_tissue, numbers.Real) or isinstance(min_tissue, bool)
            or not 0.0 < min_tissue <= 1.0):
        raise ValueError(f"min_tissue must be a number in (0, 1]; got {min_tissue!r}")
    extent = tile_size * mpp / _level0_mpp(slide, slide_mpp)
    width, height = slide.dimensions
    columns, rows = int(width // extent), int(height // extent)
    empty = pd.DataFrame({"x": pd.Series(dtype=np.int64), "y": pd.Series(dtype=np.int64),
                          "extent": pd.Series(dtype=float), "tissue": pd.Series(dtype=float)})
    if columns == 0 or rows == 0:
        return empty
    mask, _ = tissue_mask(slide)
    scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width
    # Tissue fraction of every footprint from an integral image of the mask.
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    xs = np.round(np.arange(columns) * extent).astype(np.int64)
    ys = np.round(np.arange(rows) * extent).astype(np.int64)

    def bounds(starts, scale, limit):
        low = np.clip(np.floor(starts * scale), 0, limit - 1).astype(np.int64)
        high = np.clip(np.ceil((starts + extent) * scale), low + 1, limit).astype(np.int64)
        return low, high

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
    """The coarsest level whose downsample does not exceed ``downsample``."""
    levels = np.asarray(slide.level_downsamples, dtype=float)
    # Scanners round their downsamples (4.0002 for a 4x level of an SVS): 1 % slack.
    fine_enough = np.flatnonzero(levels <= downsample * (1 + 1e-2))
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
                      min_tissue=0.5, pipeline=None, grid=None):
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


def slide_tiles(slide, *, mpp=None, tile_size=None, slide_mpp=None, min_tissue=0.5,
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


# --------------------------------------------------------------------------------------
# Predicting

def _input_columns(pipeline):
    first = pipeline.steps[0][1] if hasattr(pipeline, "steps") else pipeline
    columns = list(getattr(first, "feature_names_in_", ["image"]))
    if isinstance(first, TileResampler) and MPP_COLUMN not in columns:
        # The tiles' declared resolution, which TileResampler reads and then drops.
        columns.append(MPP_COLUMN)
    return columns


def _without_caches(pipeline, cache):
    """The pipeline with every step's ``cache`` set to ``cache``: shallow copies of the
    steps that have one, the fitted state shared, the caller's pipeline untouched."""
    if not hasattr(pipeline, "steps"):
        steps = [pipeline]
    else:
        steps = [step for _, step in pipeline.steps]
    copies = []
    for step in steps:
        if "cache" in getattr(step, "__dict__", {}):
            # A shallow copy by hand: copy.copy of a skorch net goes through its pickling
            # (torch.save of the module). A plain attribute: set_params may reinitialize.
            shallow = object.__new__(type(step))
            shallow.__dict__.update(step.__dict__)
            shallow.cache = cache
            step = shallow
        copies.append(step)
    if not hasattr(pipeline, "steps"):
        return copies[0]
    shallow = object.__new__(type(pipeline))
    shallow.__dict__.update(pipeline.__dict__)
    shallow.steps = [(name, step) for (name, _), step in zip(pipeline.steps, copies)]
    return shallow


def _predict_batch(pipeline, batch, gates):
    columns = _input_columns(pipeline)
    missing = [c for c in columns if c not in batch.columns]
    if missing:
        raise ValueError(f"the pipeline was fitted on the columns {columns}; slide tiles have "
                         f"only image, x, y, extent, tissue and mpp")
    X = batch[columns]
    classifier = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    if gates and hasattr(classifier, "predict_proba_and_gates"):
        # Features once, then one pass of the network for both.
        features = pipeline[:-1].transform(X) if hasattr(pipeline, "steps") else X
        proba, weights = classifier.predict_proba_and_gates(features)
        weights = weights.to_numpy()
    else:
        proba = pipeline.predict_proba(X)
        weights = np.full((len(X), 2), np.nan)
    return np.asarray(proba, dtype=float), weights


def predict_slide(pipeline, slide, *, mpp=None, tile_size=None, batch_size=64, slide_mpp=None,
                  min_tissue=0.5, gates=True, cache=None, verbose=1):
    """Classify every tissue tile of a slide.

    Parameters
    ----------
    pipeline : fitted estimator with ``predict_proba``
        Usually a fitted :func:`hiercls.make_fusion_pipeline`, taking ``X`` with an
        ``image`` column.
    slide : path or openslide.OpenSlide
    mpp, tile_size : float and int, or None
        The model's resolution and tile side; None takes what the pipeline declares
        (:func:`model_resolution`) or :data:`DEFAULT_RESOLUTION`. A pipeline trained on
        tiles that declared no mpp needs ``mpp`` (see :func:`resolve_model_resolution`).
        Values that disagree with what the pipeline declares give a
        :class:`ResolutionMismatchWarning`: the model then sees another field of view.
    batch_size : int, default=64
        Tiles read and predicted at a time.
    slide_mpp : float or None, default=None
        The slide's level-0 resolution, when the file does not declare it.
    min_tissue : float, default=0.5
        As in :func:`tile_grid`.
    gates : bool, default=True
        Also return the gate weights (from the same pass of the network as the
        probabilities, :meth:`~hiercls.HierarchicalFusionClassifier.predict_proba_and_gates`).
    cache : None, "auto" or path, default=None
        The feature caches of the pipeline's steps (radiomics, frozen-backbone embeddings)
        while predicting the slide: None turns them off, since a slide's tiles are seen
        once and would fill the disk (about 40 KB per tile); "auto" or a folder uses that
        cache. The pipeline itself is left as it is.
    verbose : int, default=1
        A progress bar over the tiles; 0 is silent.

    Returns
    -------
    DataFrame
        One row per tissue tile: ``x``, ``y`` (level-0 top-left corner), ``extent``,
        ``tissue``, ``Non-Tumor``, ``Non-Viable-Tumor``, ``Viable-Tumor`` (probabilities),
        ``predicted`` (the most probable class), ``gate_image`` and ``gate_radiomics``
        (NaN for a model without gates or with ``gates=False``). Its ``attrs`` hold the
        ``slide`` path, ``mpp``, ``tile_size``, ``slide_mpp`` and ``dimensions``.
    """
    if not hasattr(pipeline, "predict_proba"):
        raise TypeError(f"pipeline must be a fitted estimator with predict_proba; got "
                        f"{type(pipeline).__name__}")
    slide = open_slide(slide)
    declared = model_resolution(pipeline)
    requested = (mpp, tile_size)
    mpp, tile_size = resolve_model_resolution(pipeline, mpp, tile_size)
    if declared is not None:
        known = _mpp_known(_resolution_step(pipeline))
        differ = ((requested[0] is not None and known and not np.isclose(mpp, declared[0]))
                  or (requested[1] is not None and tile_size != declared[1]))
        if differ:
            shown = f"{declared[0]:g} um/px" if known else "an undeclared resolution"
            warnings.warn(f"predict_slide: tiles of {tile_size} px at {mpp:g} um/px for a model "
                          f"trained on tiles of {declared[1]} px at {shown}; the model sees "
                          "another field of view than in training", ResolutionMismatchWarning,
                          stacklevel=2)
    pipeline = _without_caches(pipeline, cache)
    level0_mpp = _level0_mpp(slide, slide_mpp)
    grid = tile_grid(slide, mpp=mpp, tile_size=tile_size, slide_mpp=level0_mpp,
                     min_tissue=min_tissue)
    parts = []
    with tqdm(total=len(grid), desc=f"slide {Path(_name(slide)).name}", unit="tile",
              disable=not verbose) as progress:
        for batch in iter_tile_batches(slide, mpp=mpp, tile_size=tile_size,
                                       batch_size=batch_size, grid=grid):
            proba, weights = _predict_batch(pipeline, batch, gates)
            part = batch.drop(columns=["image", MPP_COLUMN])
            for k, name in enumerate(CLASS_NAMES):
                part[name] = proba[:, k]
            part["predicted"] = np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)]
            part[list(_GATE_COLUMNS)] = weights
            parts.append(part)
            progress.update(len(batch))
    if parts:
        table = pd.concat(parts).reset_index(drop=True)
    else:
        table = grid.assign(**{name: pd.Series(dtype=float) for name in CLASS_NAMES},
                            predicted=pd.Series(dtype=object),
                            **{name: pd.Series(dtype=float) for name in _GATE_COLUMNS})
    table.attrs.update(slide=_name(slide), mpp=mpp, tile_size=tile_size,
                       slide_mpp=level0_mpp, dimensions=tuple(slide.dimensions))
    return table


def predict_slides(pipeline, slides, *, n_jobs=None, verbose=1, **kwargs):
    """:func:`predict_slide` over several slides, in parallel with joblib.

    Under ``joblib.parallel_config(backend="dask")`` each slide is a task on the Dask
    cluster (the fitted pipeline is sent to the workers with it).

    Parameters
    ----------
    pipeline : fitted estimator
    slides : list of paths
    n_jobs : int or None, default=None
        joblib's ``n_jobs``; None is one at a time unless a ``parallel_config`` says more.
    verbose : int, default=1
        joblib's progress messages as slides finish (each slide's own bar stays off); 0
        is silent.
    **kwargs
        Passed to :func:`predict_slide`.

    Returns
    -------
    list of DataFrame
        The tiles table of each slide, in the order of ``slides``.
    """
    from joblib import Parallel, delayed

    slides = [str(s) if isinstance(s, os.PathLike) else s for s in slides]
    tasks = (delayed(predict_slide)(pipeline, s, verbose=0, **kwargs) for s in slides)
    return Parallel(n_jobs=n_jobs, verbose=10 if verbose else 0)(tasks)


# --------------------------------------------------------------------------------------
# Necrosis

def _check_tiles(tiles, name="tiles"):
    # extent draws each tile's box on the maps.
    needed = ["x", "y", "extent", *CLASS_NAMES]
    if not isinstance(tiles, pd.DataFrame) or any(c not in tiles.columns for c in needed):
        raise ValueError(f"{name} must be a DataFrame with the columns {needed}, as "
                         "predict_slide returns")
    return tiles


def slide_necrosis(tiles, *, name=None, n_bootstrap=1000, confidence=0.95,
                   threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES, random_state=0):
    """The necrotic fraction of the tumor on one slide, with a bootstrap interval.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    name : str or None, default=None
        The row's label; None uses the slide's file name (``tiles.attrs["slide"]``).
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`hiercls.evaluation.necrosis.necrosis_from_probabilities`.

    Returns
    -------
    DataFrame
        One row indexed by ``slide``, with the columns of
        :func:`~hiercls.evaluation.necrosis.necrosis_from_probabilities`. A slide without tissue tiles
        has ``n_tiles`` 0, NaN fractions and the response ``"no tumor"``.
    """
    _check_tiles(tiles)
    if name is None:
        name = Path(str(tiles.attrs.get("slide", "slide"))).name
    return patient_necrosis({name: tiles}, {name: name}, n_bootstrap=n_bootstrap, confidence=confidence,
                            threshold=threshold, min_tumor_tiles=min_tumor_tiles,
                            random_state=random_state, index_name="slide")


def patient_necrosis(slides, patients=None, *, n_bootstrap=1000, confidence=0.95,
                     threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES, random_state=0,
                     index_name="patient"):
    """The necrotic fraction of each patient over all of their slides.

    The patient's tiles are pooled (a slide with more tumor weighs more), and the bootstrap
    resamples the pooled tiles.

    Parameters
    ----------
    slides : dict of str to DataFrame
        Each slide's name and its :func:`predict_slide` table.
    patients : dict of str to str, or None, default=None
        The patient of each slide; None pools all slides as one patient named by
        ``index_name``.
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`hiercls.evaluation.necrosis.necrosis_from_probabilities`.
    index_name : str, default="patient"

    Returns
    -------
    DataFrame
        One row per patient (sorted), columns as in
        :func:`~hiercls.evaluation.necrosis.necrosis_from_probabilities`.
    """
    if not isinstance(slides, dict) or not slides:
        raise ValueError("slides must be a non-empty dict of slide name to predict_slide table")
    if patients is not None:
        absent = [s for s in slides if s not in patients]
        if absent:
            raise ValueError(f"patients gives no patient for the slide(s) {absent}")
    frames, groups, empty = [], [], []
    for name, tiles in slides.items():
        _check_tiles(tiles, f"slides[{name!r}]")
        group = index_name if patients is None else patients[name]
        if len(tiles):
            frames.append(tiles[list(CLASS_NAMES)])
            groups.extend([group] * len(tiles))
        else:
            empty.append(group)
    if frames:
        table = necrosis_from_probabilities(
            pd.concat(frames), pd.Series(groups, name=index_name), n_bootstrap=n_bootstrap,
            confidence=confidence, threshold=threshold, min_tumor_tiles=min_tumor_tiles,
            random_state=random_state)
    else:
        table = necrosis_from_probabilities([[1.0, 0.0, 0.0]], pd.Series(["_"], name=index_name),
                                            n_bootstrap=0).iloc[:0]
    # Patients whose slides hold no tissue tile at all: a row saying so.
    for group in sorted(set(empty) - set(table.index)):
        row = {c: np.nan for c in table.columns}
        row.update(n_tiles=0, expected_tumor_tiles=0.0, expected_necrotic_tiles=0.0,
                   argmax_tumor_tiles=0, response="no tumor")
        table.loc[group] = row
    return table.sort_index()


# --------------------------------------------------------------------------------------
# Maps

def _class_colors():  # the maps use the report's class colours
    from ..reporting.plots import CLASS_COLORS

    return CLASS_COLORS


def _thumbnail_grid(slide, tiles, size):
    """The thumbnail and each tile's rectangle on it (row0, row1, col0, col1)."""
    slide = open_slide(slide if slide is not None else tiles.attrs["slide"])
    _, thumbnail = tissue_mask(slide, size=size)
    width, height = slide.dimensions
    sy, sx = thumbnail.shape[0] / height, thumbnail.shape[1] / width
    extent = tiles["extent"].to_numpy(float)
    x, y = tiles["x"].to_numpy(float), tiles["y"].to_numpy(float)
    boxes = np.stack([np.floor(y * sy), np.ceil((y + extent) * sy),
                      np.floor(x * sx), np.ceil((x + extent) * sx)], axis=1) if len(tiles) else \
        np.zeros((0, 4))
    return thumbnail, boxes.astype(np.int64)


def plot_slide_overlay(tiles, slide=None, *, size=TISSUE_THUMBNAIL, alpha=0.45, tissue=True):
    """The slide's thumbnail with each tile coloured by its predicted class.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    slide : path, openslide.OpenSlide or None, default=None
        The slide; None opens ``tiles.attrs["slide"]``.
    size : int, default=TISSUE_THUMBNAIL
        Long side of the thumbnail.
    alpha : float, default=0.45
        Opacity of the class colours.
    tissue : bool, default=True
        Draw the tiles over the slide's thumbnail; False draws them on white, a map that
        shows none of the slide's pixels (to publish a map of slides that may not be shared).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_tiles(tiles)
    thumbnail, boxes = _thumbnail_grid(slide, tiles, size)
    if not tissue:
        thumbnail = np.full_like(thumbnail, 255)
    colors = _class_colors()
    overlay = np.zeros((*thumbnail.shape[:2], 4))
    codes = pd.Categorical(tiles["predicted"], categories=CLASS_NAMES).codes
    for (r0, r1, c0, c1), code in zip(boxes, codes):
        if code >= 0:
            rgb = tuple(int(colors[code][i:i + 2], 16) / 255 for i in (1, 3, 5))
            overlay[r0:r1, c0:c1] = (*rgb, alpha)
    fig = Figure(figsize=_figsize(thumbnail), layout="constrained")
    ax = fig.subplots()
    ax.imshow(thumbnail)
    ax.imshow(overlay)
    ax.set_axis_off()
    counts = pd.Series(tiles["predicted"]).value_counts()
    ax.legend(handles=[Patch(color=colors[k], alpha=0.8, label=f"{n} ({int(counts.get(n, 0))})")
                       for k, n in enumerate(CLASS_NAMES)],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    ax.set_title(f"Predicted class of {len(tiles)} tissue tiles")
    return fig


def plot_slide_heatmap(tiles, slide=None, *, size=TISSUE_THUMBNAIL, column="Viable-Tumor"):
    """A heat map of one probability (by default viable tumor) over the slide.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    slide : path, openslide.OpenSlide or None, default=None
        The slide; None opens ``tiles.attrs["slide"]``.
    size : int, default=TISSUE_THUMBNAIL
    column : str, default="Viable-Tumor"
        The probability column to map.

    Returns
    -------
    matplotlib.figure.Figure
        The gray thumbnail with the probability over the tissue tiles (0..1 colour scale);
        background left uncoloured.
    """
    _check_tiles(tiles)
    if column not in tiles.columns:
        raise ValueError(f"column {column!r} is not a column of tiles; expected one of "
                         f"{list(CLASS_NAMES)}")
    thumbnail, boxes = _thumbnail_grid(slide, tiles, size)
    heat = np.full(thumbnail.shape[:2], np.nan)
    for (r0, r1, c0, c1), value in zip(boxes, tiles[column].to_numpy(float)):
        heat[r0:r1, c0:c1] = value
    fig = Figure(figsize=_figsize(thumbnail), layout="constrained")
    ax = fig.subplots()
    ax.imshow(thumbnail.mean(axis=2), cmap="gray", vmin=0, vmax=255)
    shown = ax.imshow(np.ma.masked_invalid(heat), cmap="magma", vmin=0.0, vmax=1.0, alpha=0.8)
    fig.colorbar(shown, ax=ax, shrink=0.8, label=f"P({column})")
    ax.set_axis_off()
    ax.set_title(f"P({column}) of {len(tiles)} tissue tiles")
    return fig


def _figsize(thumbnail):
    h, w = thumbnail.shape[:2]
    return (7.5, max(2.5, 6.0 * h / max(w, 1)))


# --------------------------------------------------------------------------------------
# Report

def write_slide_report(out_dir, slides, *, title="hiercls slide report", metadata=None,
                       dpi=110):
    """Write ``out_dir/report.html``: one section per slide with its necrosis and maps.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Created if needed; ``report.html`` is overwritten.
    slides : dict of str to dict
        Per slide name: ``tiles`` (the :func:`predict_slide` table), ``necrosis``
        (:func:`slide_necrosis`) and ``figures`` (a dict ``{"overlay": Figure,
        "heatmap": Figure}``; missing figures are drawn from the tiles).
    title : str, default="hiercls slide report"
    metadata : dict or None, default=None
        Shown as a table under the title.
    dpi : int, default=110

    Returns
    -------
    pathlib.Path
        The path of ``report.html``, self-contained (figures embedded as base64 PNG).
    """
    import base64
    import html

    from .. import __version__
    from ..reporting.html import _STYLE, _percent, _png, _table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for name, entry in slides.items():
        tiles, necrosis = entry["tiles"], entry["necrosis"]
        figures = dict(entry.get("figures") or {})
        figures.setdefault("overlay", None)
        figures.setdefault("heatmap", None)
        if figures["overlay"] is None:
            figures["overlay"] = plot_slide_overlay(tiles)
        if figures["heatmap"] is None:
            figures["heatmap"] = plot_slide_heatmap(tiles)
        row = necrosis.iloc[0]
        low, high = float(row["necrotic_fraction_low"]), float(row["necrotic_fraction_high"])
        interval = (f"{100 * low:.1f} – {100 * high:.1f} %" if np.isfinite(low)
                    and np.isfinite(high) else "n/a")
        counts = tiles["predicted"].value_counts() if len(tiles) else pd.Series(dtype=int)
        summary.append([name, len(tiles), *[int(counts.get(c, 0)) for c in CLASS_NAMES],
                        _percent(float(row["necrotic_fraction"])), interval, row["response"]])
        images = []
        for key, caption in (("overlay", "Predicted class of each tissue tile."),
                             ("heatmap", "Probability of viable tumor of each tissue tile.")):
            encoded = base64.b64encode(_png(figures[key], dpi)).decode("ascii")
            images.append(f'<figure><img alt="{html.escape(name)} {key}" '
                          f'src="data:image/png;base64,{encoded}"><figcaption>'
                          f"{html.escape(caption)}</figcaption></figure>")
        attrs = tiles.attrs
        detail = (f"{len(tiles)} tissue tiles of {attrs.get('tile_size', '?')} px at "
                  f"{attrs.get('mpp', '?')} µm/px; slide level 0 at "
                  f"{attrs.get('slide_mpp', '?')} µm/px, {attrs.get('dimensions', '?')} px.")
        sections.append(f'<h2 id="slide-{html.escape(name)}">{html.escape(name)}</h2>'
                        f"<p>{html.escape(detail)}</p>{''.join(images)}")
    header = ["slide", "tissue tiles", *CLASS_NAMES, "necrosis (estimate)", "interval", "response"]
    meta = "" if not metadata else _table(None, [[k, v] for k, v in metadata.items()],
                                          name_columns=2)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{meta}
<h2 id="necrosis">Necrosis per slide</h2>
{_table(header, summary)}
<p class="note">Necrosis is the non-viable share of the tumor tiles (Non-Tumor tiles
excluded), sum P(Non-Viable) / sum P(Non-Viable or Viable); the interval is a percentile
bootstrap over the slide's tiles. Good response: necrosis &gt;= 90 %.</p>
{"".join(sections)}
<p class="note">Written by hiercls {html.escape(__version__)}.</p>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
