"""Physical resolution of tiles: the TCIA figures and TileResampler, the pipeline's first step.

A tile may declare its pixel size in an ``mpp`` column (micrometres per pixel). A fitted
pipeline records the resolution it was trained at (``training_resolution_``) and resamples
every declared tile to it before radiomics and backbone, so that a scanner at another
magnification, or a slide read at another pyramid level, shows the model what it learned
from. Tiles that declare nothing are taken at the training resolution.
"""

import math
import numbers
import os
import warnings
from collections import Counter

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .images import IMAGE_COLUMN, check_image_frame, read_tile

#: The column in which a tile declares its pixel size, in micrometres per pixel.
MPP_COLUMN = "mpp"

#: (mpp, tile_size) of the TCIA originals: 1024 px tiles cut "at 10x" from Aperio
#: ScanScope slides (collection description; Arunachalam et al., PLoS ONE 2019). Neither
#: source states micrometres per pixel; 1.0 um/px is the usual figure of a 10x level on
#: those scanners (0.25 um/px at 40x), so it is an assumption, not a measured value.
TCIA_ORIGINAL_RESOLUTION = (1.0, 1024)

#: (mpp, tile_size) assumed for a pipeline that declares none: the 512 px copies of the
#: TCIA originals (/work/shared's ``osteosarcoma-ut-512``), i.e. about 2.0 um/px and a
#: field of view of about 1 mm. Derived from :data:`TCIA_ORIGINAL_RESOLUTION`.
DEFAULT_RESOLUTION = (TCIA_ORIGINAL_RESOLUTION[0] * 2, TCIA_ORIGINAL_RESOLUTION[1] // 2)


def tcia_mpp(side):
    """The pixel size of a TCIA Osteosarcoma-UT tile of ``side`` pixels (any downscaled copy).

    The originals are 1024 px at :data:`TCIA_ORIGINAL_RESOLUTION`'s mpp; a copy downscaled
    to ``side`` px covers the same field of view.

    Examples
    --------
    >>> from hiercls.resolution import tcia_mpp
    >>> tcia_mpp(1024), tcia_mpp(512)
    (1.0, 2.0)
    """
    mpp, original = TCIA_ORIGINAL_RESOLUTION
    return mpp * original / float(side)


class TileSizeWarning(UserWarning):
    """Tiles that declare no resolution differ in size from the training tiles."""


def _positive_mpp(values, name):
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers (micrometres per pixel); got "
                         f"{list(values)[:3]}...") from None
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ValueError(f"{name} must hold positive finite micrometres per pixel; "
                         f"{int(bad.sum())} row(s) do not, e.g. {values[bad][:3].tolist()}")
    return values


def tile_side(tile):
    """(height, width) of a tile, reading only a file's header.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.resolution import tile_side
    >>> tile_side(np.zeros((32, 48, 3), dtype=np.uint8))
    (32, 48)
    """
    if isinstance(tile, (str, os.PathLike)):
        with Image.open(tile) as image:
            width, height = image.size
        return height, width
    shape = np.shape(tile)
    return int(shape[0]), int(shape[1])


def resample_tile(tile, factor=None, *, size=None):
    """A tile (path or array) resampled, as RGB uint8.

    Give either ``factor`` (2 doubles its side) or ``size``, the side in pixels of the
    square result. Downscaling averages (Pillow's ``reduce`` then Lanczos, antialiased);
    upscaling is Lanczos.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.resolution import resample_tile
    >>> tile = np.zeros((64, 64, 3), np.uint8)
    >>> resample_tile(tile, 0.5).shape, resample_tile(tile, size=16).shape
    ((32, 32, 3), (16, 16, 3))
    """
    if (factor is None) == (size is None):
        raise TypeError("resample_tile takes either factor or size=, not both or neither")
    rgb = read_tile(tile)
    height, width = rgb.shape[:2]
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
            raise ValueError(f"size must be a positive int (pixels); got {size!r}")
        size = (int(size), int(size))
    else:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return rgb
    image = Image.fromarray(rgb)
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


class TileResampler(TransformerMixin, BaseEstimator):
    """Bring every tile to the resolution the pipeline was trained at.

    ``fit`` learns the training resolution: the pixel size the training tiles declare (an
    ``mpp`` column, micrometres per pixel, or ``X.attrs["mpp"]`` for the whole frame, as
    :func:`hiercls.datasets.load_osteosarcoma_ut` sets it), else ``mpp``, and their most
    common side in pixels. ``transform`` resamples each tile whose declared mpp differs
    (a tile at 1.0 um/px shown to a model trained at 2.0 um/px is halved) and passes every
    other tile through untouched, the same object. Tiles that declare nothing are taken
    at the training resolution; those whose size differs from the training tiles' get one
    :class:`TileSizeWarning` per call, naming how many and their sizes.

    The ``mpp`` column leaves this step only if the training tiles had one (then holding
    the training mpp, which the radiomics step uses as the physical pixel spacing of the
    shape features); a model trained without it predicts declared tiles unchanged.

    Parameters
    ----------
    mpp : float or None, default=None
        The training resolution when the training tiles declare none; None takes
        :data:`DEFAULT_RESOLUTION`'s (the 512 px TCIA copies, 2.0 um/px).

    Attributes
    ----------
    training_resolution_ : (float, int)
        The training mpp and tile side (read by :func:`hiercls.slides.model_resolution`).
    mpp_declared_ : bool
        Whether the training tiles declared their mpp (else ``mpp`` or the default).
    feature_names_in_ : ndarray of str
        The columns seen in ``fit``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hiercls.resolution import TileResampler
    >>> tile = np.zeros((64, 64, 3), dtype=np.uint8)
    >>> train = pd.DataFrame({"image": [tile], "mpp": [2.0]})
    >>> step = TileResampler().fit(train)
    >>> step.training_resolution_
    (2.0, 64)
    >>> sharper = pd.DataFrame({"image": [np.zeros((128, 128, 3), np.uint8)], "mpp": [1.0]})
    >>> out = step.transform(sharper)
    >>> out["image"].iloc[0].shape, float(out["mpp"].iloc[0])
    ((64, 64, 3), 2.0)
    """

    def __init__(self, *, mpp=None):
        self.mpp = mpp

    def fit(self, X, y=None):
        """Learn the training resolution from the training tiles.

        Parameters
        ----------
        X : DataFrame
            An ``image`` column, optionally an ``mpp`` column.
        y : ignored

        Returns
        -------
        self : TileResampler
        """
        check_image_frame(X)
        if self.mpp is not None and not (isinstance(self.mpp, numbers.Real)
                                         and math.isfinite(self.mpp) and self.mpp > 0):
            raise ValueError(f"mpp must be a positive number (micrometres per pixel) or "
                             f"None; got {self.mpp!r}")
        tiles = X[IMAGE_COLUMN].tolist()
        declared = self._declared(X)
        if declared is not None:
            # The most common declared value; others are resampled to it.
            mpp = float(Counter(declared.tolist()).most_common(1)[0][0])
            at_mpp = [tile for tile, value in zip(tiles, declared) if _same(value, mpp)]
        else:
            attrs_mpp = X.attrs.get(MPP_COLUMN)
            mpp = (float(_positive_mpp([attrs_mpp], "X.attrs['mpp']")[0]) if attrs_mpp is not None
                   else float(self.mpp) if self.mpp is not None else float(DEFAULT_RESOLUTION[0]))
            at_mpp = tiles
        sides = Counter(max(tile_side(tile)) for tile in at_mpp)
        self.training_resolution_ = (mpp, int(sides.most_common(1)[0][0]))
        self.mpp_declared_ = declared is not None or X.attrs.get(MPP_COLUMN) is not None
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    @staticmethod
    def _declared(X):
        if MPP_COLUMN not in X.columns:
            return None
        return _positive_mpp(X[MPP_COLUMN], f"X[{MPP_COLUMN!r}]")

    def transform(self, X):
        """Resample the tiles whose declared mpp differs from the training mpp.

        Parameters
        ----------
        X : DataFrame
            The columns seen in ``fit``, with or without ``mpp``.

        Returns
        -------
        X_out : DataFrame
            ``X`` itself when nothing changes; else a copy with resampled tiles (RGB
            arrays), the columns of ``fit``, same index.
        """
        check_is_fitted(self, "training_resolution_")
        check_image_frame(X)
        fitted = [c for c in self.feature_names_in_ if c != MPP_COLUMN]
        columns = [str(c) for c in X.columns if c != MPP_COLUMN]
        if columns != fitted:
            raise ValueError(f"X has columns {columns} (besides {MPP_COLUMN!r}), but "
                             f"TileResampler was fitted on {fitted}")
        mpp, side = self.training_resolution_
        declared = self._declared(X)
        if declared is None:
            self._warn_sizes(X[IMAGE_COLUMN].tolist(), side)
            if MPP_COLUMN not in self.feature_names_in_:
                return X
            out = X.copy()
            out[MPP_COLUMN] = mpp
            return out[list(self.feature_names_in_)]
        differ = np.flatnonzero(~np.isclose(declared, mpp, rtol=1e-9, atol=0.0))
        keep_column = MPP_COLUMN in self.feature_names_in_
        if not len(differ) and (keep_column or MPP_COLUMN not in X.columns):
            return X
        out = X.copy()
        if len(differ):
            images = out[IMAGE_COLUMN].tolist()
            for row in differ:
                images[row] = resample_tile(images[row], declared[row] / mpp)
            out[IMAGE_COLUMN] = pd.Series(images, index=out.index, dtype=object)
            out[MPP_COLUMN] = mpp
        return out[list(self.feature_names_in_)] if keep_column else out.drop(columns=MPP_COLUMN)

    @staticmethod
    def _warn_sizes(tiles, side):
        sizes = Counter(max(tile_side(tile)) for tile in tiles)
        other = {size: count for size, count in sizes.items() if size != side}
        if other:
            warnings.warn(
                f"{sum(other.values())} of {len(tiles)} tile(s) declare no resolution and "
                f"measure {sorted(other)} px, not the training tiles' {side} px; they are "
                f"taken at the training resolution. Declare their micrometres per pixel in "
                f"an {MPP_COLUMN!r} column to have them resampled",
                TileSizeWarning, stacklevel=3)

    def get_feature_names_out(self, input_features=None):
        """The output columns: those seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "feature_names_in_")
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features does not match the columns seen in fit")
        return self.feature_names_in_.copy()


def _same(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
