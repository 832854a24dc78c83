"""Physical resolution of tiles: the TCIA figures and TileResampler, the pipeline's first step.

A tile may declare its pixel size in an ``mpp`` column (micrometres per pixel). A fitted
pipeline records the resolution it was trained at (``training_resolution_``) and resamples
every declared tile to it before radiomics and backbone, so that a scanner at another
magnification, or a slide read at another pyramid level, shows the model what it learned
from. Tiles that declare nothing (no column, no ``X.attrs["mpp"]``, or NaN) are taken at
the training resolution; a model trained without any declaration (and without
``TileResampler(mpp=...)``, ``hiercls fit --mpp``) does not know its resolution and
passes declared tiles unchanged, with a :class:`ResolutionUnknownWarning`.
"""

import math
import numbers
import warnings
from collections import Counter

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..data.datasets import DEFAULT_RESOLUTION, TCIA_ORIGINAL_RESOLUTION, tcia_mpp  # noqa: F401
from ..data.images import IMAGE_COLUMN, MPP_COLUMN, check_image_frame, read_tile, tile_side  # noqa: F401
from ..exceptions import ResolutionUnknownWarning, TileSizeWarning  # noqa: F401  (its home before)
from .columns import TileTableColumnsMixin


def _positive_mpp(values, name):
    """``values`` as float64; NaN (a missing value) means "this tile declares nothing"."""
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers (micrometres per pixel); got "
                         f"{list(values)[:3]}...") from None
    bad = ~(np.isnan(values) | (np.isfinite(values) & (values > 0)))
    if bad.any():
        raise ValueError(f"{name} must hold positive finite micrometres per pixel; "
                         f"{int(bad.sum())} row(s) do not, e.g. {values[bad][:3].tolist()}")
    return values


def resample_tile(tile, factor=None, *, size=None):
    """A tile (path or array) resampled, as an RGB uint8 array.

    Give either ``factor`` (2 doubles its side) or ``size``, the output side in pixels
    (the tile becomes ``size`` x ``size``). Downscaling averages (Pillow's ``reduce`` then
    Lanczos, antialiased); upscaling is Lanczos. A tile already at the target size comes
    back as read.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.features.resolution import resample_tile
    >>> tile = np.zeros((64, 64, 3), dtype=np.uint8)
    >>> resample_tile(tile, 0.5).shape, resample_tile(tile, size=48).shape
    ((32, 32, 3), (48, 48, 3))
    """
    if (factor is None) == (size is None):
        raise TypeError("resample_tile takes either factor or size=, not both or neither")
    rgb = read_tile(tile)
    height, width = rgb.shape[:2]
    if size is not None:
        if not (isinstance(size, numbers.Integral) and size > 0):
            raise ValueError(f"size must be a positive whole number of pixels; got {size!r}")
        target = (int(size), int(size))
    else:
        target = (max(1, round(width * factor)), max(1, round(height * factor)))
    if target == (width, height):
        return rgb
    image = Image.fromarray(rgb)
    return np.asarray(image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))


class TileResampler(TileTableColumnsMixin, TransformerMixin, BaseEstimator):
    """Bring every tile to the resolution the pipeline was trained at.

    ``fit`` learns the training resolution: the pixel size the training tiles declare (an
    ``mpp`` column, micrometres per pixel, or ``X.attrs["mpp"]`` for the whole frame, as
    :func:`hiercls.data.datasets.load_osteosarcoma_ut` sets it), else ``mpp``, and their most
    common side in pixels. ``transform`` resamples each tile whose declared mpp differs
    (a tile at 1.0 um/px shown to a model trained at 2.0 um/px is halved) and passes every
    other tile through untouched, the same object. Tiles that declare nothing are taken
    at the training resolution; those whose size differs from the training tiles' get one
    :class:`TileSizeWarning` per call, naming how many and their sizes, and so do
    declared tiles that, resampled, still differ in size from the training tiles. A tile
    declares its mpp in the ``mpp`` column; a missing value (NaN) there declares nothing;
    without the column, ``X.attrs["mpp"]`` declares it for every tile, in ``transform``
    as in ``fit``.

    The ``mpp`` column leaves this step only if the training tiles had one (then holding
    the training mpp, which the radiomics step uses as the physical pixel spacing of the
    shape features). A model whose training resolution is unknown (no declaration in
    ``fit`` and ``mpp=None``) predicts declared tiles unchanged, with one
    :class:`ResolutionUnknownWarning` per call.

    ``transform`` returns the resampled tiles as arrays, all of them in memory at once
    (about ``3 * side**2`` bytes per resampled tile); tiles that need no resampling stay
    as they came (paths stay paths). For many tiles at another resolution, transform in
    chunks; :mod:`hiercls.slides` streams a slide's tiles in batches.

    Parameters
    ----------
    mpp : float or None, default=None
        The training resolution when the training tiles declare none. None leaves it
        unknown: ``training_resolution_`` then records :data:`DEFAULT_RESOLUTION`'s mpp
        (the 512 px TCIA copies, 2.0 um/px) as a guess, ``resolution_known_`` is False
        and declared tiles are not resampled.

    Attributes
    ----------
    training_resolution_ : (float, int)
        The training mpp and tile side (read by :func:`hiercls.slides.model_resolution`).
    mpp_declared_ : bool
        Whether the training tiles declared their mpp (else ``mpp`` or the default).
    resolution_known_ : bool
        Whether the training mpp was declared or given as ``mpp`` (not the default guess).
    feature_names_in_ : ndarray of str
        The columns seen in ``fit``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hiercls.features.resolution import TileResampler
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
        if declared is not None and not np.isnan(declared).all():
            # The most common declared value; others are resampled to it.
            mpp = float(Counter(declared[~np.isnan(declared)].tolist()).most_common(1)[0][0])
            at_mpp = [tile for tile, value in zip(tiles, declared)
                      if np.isnan(value) or _same(value, mpp)]
            self.mpp_declared_ = True
        else:
            # No column, or one that declares nothing: X.attrs, else mpp, else the guess.
            attrs_mpp = self._attrs_mpp(X)
            self.mpp_declared_ = attrs_mpp is not None
            mpp = (attrs_mpp if self.mpp_declared_
                   else float(self.mpp) if self.mpp is not None else float(DEFAULT_RESOLUTION[0]))
            at_mpp = tiles
        sides = Counter(max(tile_side(tile)) for tile in at_mpp)
        self.training_resolution_ = (mpp, int(sides.most_common(1)[0][0]))
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    @property
    def resolution_known_(self):
        """Whether the training mpp was declared or given as ``mpp`` (not the default guess)."""
        # Derived, not stored, so that models saved before it existed answer it too.
        return bool(self.mpp_declared_ or self.mpp is not None)

    @staticmethod
    def _attrs_mpp(X):
        value = X.attrs.get(MPP_COLUMN)
        if value is None:
            return None
        value = float(_positive_mpp([value], "X.attrs['mpp']")[0])
        return None if math.isnan(value) else value

    @classmethod
    def _declared(cls, X):
        """Each row's declared mpp (NaN: none), or None when no row declares one."""
        if MPP_COLUMN in X.columns:
            return _positive_mpp(X[MPP_COLUMN], f"X[{MPP_COLUMN!r}]")
        value = cls._attrs_mpp(X)
        return None if value is None else np.full(len(X), value)

    def get_fitted_state(self):
        """What ``fit`` learned, as plain values (what a model file keeps).

        Returns
        -------
        state : dict
            ``feature_names_in_`` (list of str), ``training_resolution_`` (``[mpp, side]``)
            and ``mpp_declared_`` (bool).
        """
        check_is_fitted(self, "training_resolution_")
        return {"feature_names_in_": [str(c) for c in self.feature_names_in_],
                "training_resolution_": [float(self.training_resolution_[0]),
                                         int(self.training_resolution_[1])],
                "mpp_declared_": bool(self.mpp_declared_)}

    def set_fitted_state(self, state):
        """The step as :meth:`get_fitted_state` described it, checked; returns self."""
        columns = state["feature_names_in_"]
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ValueError(f"feature_names_in_ must be a list of str; got {columns!r}")
        mpp, side = state["training_resolution_"]
        if not (isinstance(mpp, float) and mpp > 0 and isinstance(side, int) and side > 0):
            raise ValueError(f"training_resolution_ must be [mpp > 0, side > 0]; got {[mpp, side]}")
        declared = state["mpp_declared_"]
        if not isinstance(declared, bool):
            raise ValueError(f"mpp_declared_ must be a boolean; got {declared!r}")
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.training_resolution_ = (mpp, side)
        self.mpp_declared_ = declared
        return self

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
        keep_column = MPP_COLUMN in self.feature_names_in_
        tiles = X[IMAGE_COLUMN].tolist()
        if declared is not None and np.isnan(declared).all():
            declared = None  # a column of missing values declares nothing
        if declared is not None and not self.resolution_known_:
            # Nothing to resample to: the tiles pass as they are (as undeclared ones).
            warnings.warn(
                f"the tiles declare their micrometres per pixel, but this model was trained "
                f"without a declared resolution, so they are not resampled; fit with an "
                f"{MPP_COLUMN!r} column, X.attrs['mpp'] or TileResampler(mpp=...) "
                f"('hiercls fit --mpp') to have them brought to the training resolution",
                ResolutionUnknownWarning, stacklevel=2)
            declared = None
        if declared is None:
            self._warn_sizes(tiles, side)
            if keep_column:
                out = X.copy()
                out[MPP_COLUMN] = mpp
                return out[list(self.feature_names_in_)]
            return X.drop(columns=MPP_COLUMN) if MPP_COLUMN in X.columns else X
        undeclared = np.isnan(declared)
        if undeclared.any():
            self._warn_sizes([tiles[row] for row in np.flatnonzero(undeclared)], side)
        differ = np.flatnonzero(~undeclared & ~np.isclose(declared, mpp, rtol=1e-9, atol=0.0))
        images = list(tiles)
        for row in differ:
            images[row] = resample_tile(images[row], declared[row] / mpp)
        self._warn_sizes([images[row] for row in np.flatnonzero(~undeclared)], side, declared=True)
        if not len(differ) and MPP_COLUMN not in X.columns:
            return X
        if not len(differ) and keep_column and not undeclared.any():
            return X
        out = X.copy()
        if len(differ):
            out[IMAGE_COLUMN] = pd.Series(images, index=out.index, dtype=object)
        if keep_column:
            out[MPP_COLUMN] = mpp
            return out[list(self.feature_names_in_)]
        return out.drop(columns=MPP_COLUMN) if MPP_COLUMN in out.columns else out

    @staticmethod
    def _warn_sizes(tiles, side, *, declared=False):
        """One TileSizeWarning for the tiles whose side is not the training tiles'."""
        sizes = Counter(max(tile_side(tile)) for tile in tiles)
        other = {size: count for size, count in sizes.items() if size != side}
        if not other:
            return
        if declared:
            what = (f"declared tile(s) measure {sorted(other)} px at the training resolution, "
                    f"not the training tiles' {side} px: their field of view differs from the "
                    "one the model learned")
        else:
            what = (f"tile(s) declare no resolution and measure {sorted(other)} px, not the "
                    f"training tiles' {side} px; they are taken at the training resolution. "
                    f"Declare their micrometres per pixel in an {MPP_COLUMN!r} column to have "
                    "them resampled")
        warnings.warn(f"{sum(other.values())} of {len(tiles)} {what}", TileSizeWarning,
                      stacklevel=3)


def _same(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
