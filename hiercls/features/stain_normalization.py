"""Stain normalization: StainNormalizer, the pipeline's ``stain`` step.

Tiles from another laboratory or scanner differ in their H&E colours more than in what
they show. :class:`StainNormalizer` learns the stain of the *training* tiles in ``fit``
and maps every tile it transforms onto it, with the numpy normalizers of torchstain
(https://github.com/EIDOSLAB/torchstain):

- ``"macenko"`` (Macenko et al., ISBI 2009): the two stain vectors (the columns of a
  3 x 2 matrix in optical density) and the 99th percentile of each stain's concentration.
  A tile is unmixed with its own stain vectors, its concentrations are rescaled to the
  training maxima and it is recomposed with the training vectors;
- ``"reinhard"`` (Reinhard et al., 2001): the mean and standard deviation of each LAB
  channel; a tile's LAB channels are standardized and given the training ones (torchstain
  truncates the result to uint8 rather than rounding it: a fraction of a unit darker);
- ``None``: no normalization; tiles pass through as they came (the default in
  :func:`~hiercls.make_fusion_pipeline`, so that a grid search can switch it on).

torchstain fits one image, so ``fit`` hands it one mosaic: the pixels of the sampled
training tiles side by side. Neither method uses where a pixel lies, so the target is
that of the pooled pixels (Macenko: the stain vectors and concentration maxima of their
optical densities; Reinhard: the LAB statistics over all of them), not an average of
per-tile targets.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ..data.images import IMAGE_COLUMN, check_image_frame, read_tile
from ..exceptions import StainNormalizationWarning  # noqa: F401  (its home before)
from ..validation import check_number
from .columns import TileTableColumnsMixin

#: The ``method`` values StainNormalizer accepts.
METHODS = ("macenko", "reinhard", None)

#: torchstain's Macenko parameters, passed explicitly (they are its defaults): ``Io`` the
#: transmitted light intensity (optical density is ``-log((I + 1) / Io)``), ``alpha`` the
#: percentile of the extreme stain angles, ``beta`` the optical density below which, in
#: any channel, a pixel counts as background and is left out of the stain estimate.
MACENKO_IO, MACENKO_ALPHA, MACENKO_BETA = 240, 1, 0.15

#: How many bad tiles a StainNormalizationWarning names.
_NAMED_IN_WARNING = 10

#: What torchstain raises (or numpy, made strict) on a tile it cannot normalize: no
#: tissue pixels (an empty covariance), a LAB channel without spread (division by zero).
_FAILURES = (FloatingPointError, RuntimeWarning, ArithmeticError, np.linalg.LinAlgError,
             ValueError, IndexError)



#: The fitted targets of the methods, arrays of these shapes.
FITTED_TARGETS = {"stain_matrix_": (3, 2), "max_concentrations_": (2,),
                  "target_means_": (3,), "target_stds_": (3,)}
_TARGETS_OF = {None: (), "macenko": ("stain_matrix_", "max_concentrations_"),
               "reinhard": ("target_means_", "target_stds_")}


class _Strict:
    """numpy's division by zero and invalid values raise instead of giving NaN.

    torchstain computes in float and casts to uint8, where a NaN becomes some byte
    without a word; raising lets StainNormalizer pass that tile through and say so.
    """

    def __enter__(self):
        self._errstate = np.errstate(divide="raise", invalid="raise", over="raise")
        self._warnings = warnings.catch_warnings()
        self._errstate.__enter__()
        self._warnings.__enter__()
        warnings.simplefilter("error", RuntimeWarning)  # np.cov / np.mean of nothing
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        return self._errstate.__exit__(*exc)


class StainNormalizer(TileTableColumnsMixin, TransformerMixin, BaseEstimator):
    """Map every tile's H&E stain onto the stain of the training tiles.

    ``fit`` draws up to ``n_fit_tiles`` training tiles (``random_state``) and fits the
    method on all their pixels at once (one mosaic, as torchstain fits one image; see
    :mod:`hiercls.features.stain_normalization`). ``transform`` normalizes each tile on
    its own towards that target and returns the tiles as RGB uint8 arrays. A tile the
    method cannot normalize (a blank or white tile, one without tissue) passes through
    unchanged, and each call that meets such tiles gives one
    :class:`StainNormalizationWarning` naming how many and which rows.

    Parameters
    ----------
    method : {"macenko", "reinhard"} or None, default="macenko"
        The normalization. None passes tiles through unchanged (the same frame, nothing
        read), so that ``stain__method=[None, "reinhard", "macenko"]`` can be searched.
    n_fit_tiles : int, default=64
        How many training tiles ``fit`` learns the target from (all when there are
        fewer). About 1.5 GB of memory for 64 tiles of 512 px with Macenko.
    random_state : int, RandomState instance or None, default=None
        Which training tiles are drawn when there are more than ``n_fit_tiles``.
    verbose : int, default=0
        Whether ``transform`` shows a progress bar.

    Attributes
    ----------
    stain_matrix_ : ndarray of shape (3, 2)
        Macenko only: the training stain vectors in optical density (RGB rows,
        hematoxylin then eosin columns).
    max_concentrations_ : ndarray of shape (2,)
        Macenko only: the 99th percentile of the training hematoxylin and eosin
        concentrations.
    target_means_, target_stds_ : ndarray of shape (3,)
        Reinhard only: the training tiles' mean and standard deviation of L (0..100),
        a and b.
    n_fit_tiles_ : int
        How many training tiles the target was learned from (0 for ``method=None``).
    feature_names_in_ : ndarray of str
        The columns seen in ``fit``.
    n_features_in_ : int

    See Also
    --------
    hiercls.nn.stain_jitter.hed_jitter : the opposite lever, random stain changes while
        training.

    Examples
    --------
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> from hiercls.features.stain_normalization import StainNormalizer
    >>> X, y, groups = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32)
    >>> train, test = X.iloc[:8], X.iloc[8:]
    >>> stain = StainNormalizer("macenko", random_state=0).fit(train)
    >>> stain.stain_matrix_.shape, stain.n_fit_tiles_
    ((3, 2), 8)
    >>> out = stain.transform(test)
    >>> out["image"].iloc[0].dtype, out.index.equals(test.index)
    (dtype('uint8'), True)
    >>> StainNormalizer(method=None).fit(train).transform(test) is test
    True
    """

    def __init__(self, method="macenko", *, n_fit_tiles=64, random_state=None, verbose=0):
        self.method = method
        self.n_fit_tiles = n_fit_tiles
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}; got {self.method!r}")
        check_number(self.n_fit_tiles, "n_fit_tiles", integer=True, low=1,
                     expected="a positive whole number of tiles")

    def fit(self, X, y=None):
        """Learn the target stain from (a sample of) the training tiles.

        Parameters
        ----------
        X : DataFrame
            An ``image`` column (paths or RGB arrays) and any others.
        y : ignored

        Returns
        -------
        self : StainNormalizer

        Raises
        ------
        ValueError
            If ``method`` or ``n_fit_tiles`` is not one of the accepted values, or if the
            sampled training tiles hold no tissue the method can learn from.
        """
        self._check_params()
        check_image_frame(X)
        for name in ("stain_matrix_", "max_concentrations_", "target_means_", "target_stds_"):
            self.__dict__.pop(name, None)  # a refit with another method keeps no stale target
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        if self.method is None:
            self.n_fit_tiles_ = 0
            return self
        rows = np.arange(len(X))
        if len(X) > self.n_fit_tiles:
            rng = check_random_state(self.random_state)
            rows = np.sort(rng.choice(len(X), size=self.n_fit_tiles, replace=False))
        tiles = X[IMAGE_COLUMN].tolist()
        # One image of all their pixels, a row high: torchstain fits one image, and
        # neither method looks at where a pixel lies.
        mosaic = np.concatenate([read_tile(tiles[row]).reshape(-1, 3) for row in rows])
        normalizer = self._torchstain()
        try:
            with _Strict():
                normalizer.fit(mosaic[np.newaxis])
        except _FAILURES as error:
            raise ValueError(
                f"StainNormalizer(method={self.method!r}) cannot learn a stain from the "
                f"{len(rows)} sampled training tile(s): they hold no tissue it can use "
                f"({type(error).__name__}: {error}); fit on tiles with tissue") from None
        if self.method == "macenko":
            self.stain_matrix_ = np.asarray(normalizer.HERef, dtype=np.float64)
            self.max_concentrations_ = np.asarray(normalizer.maxCRef, dtype=np.float64)
        else:
            self.target_means_ = np.asarray(normalizer.target_means, dtype=np.float64)
            self.target_stds_ = np.asarray(normalizer.target_stds, dtype=np.float64)
        self.n_fit_tiles_ = int(len(rows))
        return self

    def _torchstain(self):
        """A torchstain normalizer, holding the fitted target when there is one."""
        import torchstain

        if self.method == "macenko":
            normalizer = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
            if hasattr(self, "stain_matrix_"):
                # The attributes torchstain's fit sets (and normalize reads).
                normalizer.HERef = np.array(self.stain_matrix_, dtype=np.float64)
                normalizer.maxCRef = np.array(self.max_concentrations_, dtype=np.float64)
        else:
            normalizer = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
            if hasattr(self, "target_means_"):
                # float32, as torchstain's fit leaves them: the same arithmetic after a reload.
                normalizer.target_means = np.asarray(self.target_means_, dtype=np.float32)
                normalizer.target_stds = np.asarray(self.target_stds_, dtype=np.float32)
        return normalizer

    def _normalize(self, normalizer, rgb):
        if self.method == "macenko":
            normalized, _, _ = normalizer.normalize(rgb, Io=MACENKO_IO, alpha=MACENKO_ALPHA,
                                                    beta=MACENKO_BETA, stains=False)
        else:
            normalized = normalizer.normalize(rgb)
        return np.ascontiguousarray(normalized, dtype=np.uint8)

    def get_fitted_state(self):
        """What ``fit`` learned (what a model file keeps).

        Returns
        -------
        state : dict
            ``feature_names_in_`` (list of str), ``n_fit_tiles_`` and the fitted target of
            the method (:data:`FITTED_TARGETS`), as float arrays.
        """
        check_is_fitted(self, "n_fit_tiles_")
        return {"feature_names_in_": [str(c) for c in self.feature_names_in_],
                "n_fit_tiles_": int(self.n_fit_tiles_),
                **{name: getattr(self, name) for name in FITTED_TARGETS if hasattr(self, name)}}

    def set_fitted_state(self, state):
        """The step as :meth:`get_fitted_state` described it, checked; returns self."""
        if self.method not in _TARGETS_OF:
            raise ValueError(f"stain method must be one of {list(_TARGETS_OF)}; got "
                             f"{self.method!r}")
        columns = state["feature_names_in_"]
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ValueError(f"stain feature_names_in_ must be a list of str; got {columns!r}")
        n_tiles = check_number(state["n_fit_tiles_"], "stain n_fit_tiles_", integer=True, low=0,
                               expected="a whole number >= 0")
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.n_fit_tiles_ = n_tiles
        for name in _TARGETS_OF[self.method]:
            value = state[name]
            if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"
                    and value.shape == FITTED_TARGETS[name] and np.isfinite(value).all()):
                raise ValueError(f"stain {name} must be finite floats of shape "
                                 f"{FITTED_TARGETS[name]}; got {value!r}")
            setattr(self, name, value)
        return self

    def transform(self, X):
        """Normalize each tile towards the training stain.

        Parameters
        ----------
        X : DataFrame
            The columns seen in ``fit``.

        Returns
        -------
        X_out : DataFrame
            ``X`` itself for ``method=None``; else a copy whose ``image`` column holds
            the normalized tiles as (H, W, 3) uint8 arrays (those the method could not
            normalize as read), the other columns untouched, same index.
        """
        check_is_fitted(self, "n_fit_tiles_")
        check_image_frame(X)
        columns = [str(c) for c in X.columns]
        if columns != list(self.feature_names_in_):
            raise ValueError(f"X has columns {columns}, but StainNormalizer was fitted on "
                             f"{list(self.feature_names_in_)}")
        if self.method is None:
            return X
        if self.method not in ("macenko", "reinhard"):  # set_params after fit
            raise ValueError(f"method must be one of {list(METHODS)}; got {self.method!r}")
        normalizer = self._torchstain()
        images, failed = [], []
        tiles = tqdm(X[IMAGE_COLUMN].tolist(), desc="stain", unit="tile",
                     disable=not self.verbose)
        for position, tile in enumerate(tiles):
            rgb = read_tile(tile)
            try:
                with _Strict():
                    images.append(self._normalize(normalizer, rgb))
            except _FAILURES:
                images.append(rgb)
                failed.append(position)
        if failed:
            labels = [X.index[position] for position in failed]
            named = ", ".join(repr(label) for label in labels[:_NAMED_IN_WARNING])
            more = len(labels) - _NAMED_IN_WARNING
            warnings.warn(
                f"StainNormalizer(method={self.method!r}) could not normalize {len(failed)} of "
                f"{len(X)} tile(s), which show no stain it can measure (blank, white or "
                f"uniform tiles, no tissue); "
                f"they pass through unchanged. Rows (index labels): {named}"
                + (f" and {more} more" if more > 0 else ""),
                StainNormalizationWarning, stacklevel=2)
        out = X.copy()
        out[IMAGE_COLUMN] = pd.Series(images, index=X.index, dtype=object)
        return out

