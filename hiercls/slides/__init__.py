"""From a whole slide to tiles, predictions, necrosis and maps.

Four modules, in the order of the work: :mod:`~hiercls.slides.reading` (opening a slide,
the model's resolution, the tile grid, reading tiles), :mod:`~hiercls.slides.tissue`
(where the tissue is),
:mod:`~hiercls.slides.prediction` (a fitted pipeline on the tiles, necrosis per slide and
patient) and :mod:`~hiercls.slides.maps` (overlays, heat maps, the slide report); every
name is importable from :mod:`hiercls.slides` itself.

A whole-slide image is read with OpenSlide (``openslide-python`` with the ``openslide-bin``
wheels: no system library to install). OpenSlide is the field's reader because it opens
the formats pathology departments actually have: Aperio SVS, Hamamatsu NDPI and VMS,
3DHISTECH MRXS, Leica SCN, Philips TIFF, Ventana BIF, Sakura SVSlide, DICOM WSI and
generic tiled TIFF. ``tiffslide`` reads only the TIFF-based ones (no MRXS, VMS or DICOM),
so it would leave some scanners' slides out.

The steps:

1. **Tissue** is found on a thumbnail (at most :data:`TISSUE_THUMBNAIL` px on its long
   side, read from a low pyramid level) by :mod:`~hiercls.slides.tissue`: stained pixels
   against the glass's own colour, pen marks out, holes up to fat cells filled and specks
   removed (scikit-image morphology), sizes in micrometres.
2. **A grid** of tiles of the model's field of view (``tile_size`` px at ``mpp``
   micrometres per pixel: ``tile_size * mpp / slide_mpp`` level-0 pixels) is laid over
   the slide, non-overlapping and starting at its origin; only whole tiles are taken, and
   only those whose footprint on the thumbnail is at least ``min_tissue`` tissue
   (:data:`MIN_TISSUE`).
3. **Regions** are read from the coarsest pyramid level at least
   :data:`~hiercls.slides.reading.LEVEL_OVERSAMPLING` times finer than the model's
   resolution (else level 0), then resampled to ``tile_size`` px by the pipeline's own
   antialiased Lanczos (:func:`~hiercls.features.resolution.resample_tile`), the kernel
   the TCIA 512 px tiles were made with: a pyramid level at the model's resolution is
   not passed on as it is, since whatever built the pyramid (a scanner's filter, a
   subsampling that aliases) made its pixels. A slide whose level 0 is at the model's
   resolution is read unchanged.
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

# The TCIA figures and where they come from: hiercls.features.resolution (one place).
from ..features.resolution import DEFAULT_RESOLUTION, TCIA_ORIGINAL_RESOLUTION
from .maps import plot_slide_heatmap, plot_slide_overlay, write_slide_report
from .prediction import patient_necrosis, predict_slide, predict_slides, slide_necrosis
from .reading import (
                      MIN_TISSUE,
                      TISSUE_THUMBNAIL,
                      ResolutionMismatchWarning,
                      SlideReadError,
                      iter_tile_batches,
                      model_resolution,
                      open_slide,
                      resolve_model_resolution,
                      slide_mpp,
                      slide_tiles,
                      tile_grid,
                      tissue_mask,
)
from .tissue import detect_tissue, pen_mask

__all__ = [
    "DEFAULT_RESOLUTION",
    "MIN_TISSUE",
    "ResolutionMismatchWarning",
    "SlideReadError",
    "TCIA_ORIGINAL_RESOLUTION",
    "TISSUE_THUMBNAIL",
    "detect_tissue",
    "iter_tile_batches",
    "model_resolution",
    "open_slide",
    "patient_necrosis",
    "pen_mask",
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
