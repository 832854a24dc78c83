"""RadiomicsTransformer: adds the 29 radiomic features of each tile to a DataFrame."""

import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ...data.images import IMAGE_COLUMN, check_image_frame, read_tile, tile_digest
from ...exceptions import RadiomicsMaskWarning  # noqa: F401  (its home before)
from ..cache import ArrayCache, resolve_cache_dir
from ..columns import TileTableColumnsMixin
from ..resolution import MPP_COLUMN
from .channels import CHANNELS, to_channel
from .masks import MASK_CHANNEL, MASKS, make_mask
from .names import FEATURE_NAMES

BACKENDS = ("pyradiomics", "fast")

# Bump when a change alters the features of the same tile and settings, so that stale
# cache entries are never read.
_FEATURE_VERSION = 1



def _backend_function(backend):
    if backend == "pyradiomics":
        from .pyradiomics_backend import extract_pyradiomics

        return extract_pyradiomics
    if backend == "fast":
        from .fast_backend import extract_fast

        return extract_fast
    raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")


def _region_names(mask):
    return (mask,) if isinstance(mask, str) else tuple(mask)


def tile_radiomics(tile, *, channel, mask, bin_width, backend, spacing=1.0):
    """The radiomic features of one tile.

    ``spacing`` is the physical size of a pixel (micrometres), which scales the shape
    features; 1.0 counts them in pixels.

    Returns
    -------
    features : ndarray of shape (29 * n_regions,)
    fell_back : int
        How many of the tile's regions fell back to the whole tile.
    """
    rgb = read_tile(tile)
    regions = _region_names(mask)
    # Each channel that the features or a mask need, computed once.
    needed = {channel} | {MASK_CHANNEL[r] for r in regions if r in MASK_CHANNEL}
    channels = {name: to_channel(rgb, name) for name in needed}
    intensities = channels[channel]
    extract = _backend_function(backend)
    features, fell_back = [], 0
    for region_name in regions:
        region, degenerate = make_mask(channels.get("gray", intensities), region_name,
                                       hematoxylin=channels.get("hematoxylin"))
        fell_back += int(degenerate)
        features.append(extract(intensities, region, bin_width=bin_width, spacing=spacing))
    return np.concatenate(features), fell_back


class RadiomicsTransformer(TileTableColumnsMixin, TransformerMixin, BaseEstimator):
    """Add the 29 PyRadiomics features of each tile as numeric columns.

    When ``X`` has an ``mpp`` column (micrometres per pixel), it is the physical pixel
    spacing of the shape features (areas in um^2, lengths in um) and of TotalEnergy, as
    PyRadiomics computes them with that spacing; without one they are counted in pixels.

    The features are all 19 first-order features (StandardDeviation included) and all 10
    shape2D features (SphericalDisproportion included) of one intensity channel inside a
    region mask. Computing them needs no fitting, so ``fit`` only records the input
    columns; the features of a tile are cached by its content and the settings, so folds
    and refits that see the same tile again do not recompute them.

    Parameters
    ----------
    channel : {"gray", "hematoxylin"}, default="gray"
        The intensity channel; see :func:`hiercls.features.radiomics.channels.to_channel`.
    mask : {"tissue", "full", "nuclei"} or sequence of them, default="tissue"
        The region described. ``"tissue"`` is the pixels darker than Otsu's threshold of
        the gray channel; ``"full"`` the whole tile (what the paper's code did);
        ``"nuclei"`` the pixels above Otsu's threshold of the hematoxylin channel. A
        thresholded mask that is degenerate (a constant channel, fewer than 2 pixels, or a
        single row or column) falls back to the whole tile, with one :class:`RadiomicsMaskWarning` per
        call of ``transform``. A sequence of regions gives 29 features per region, the
        columns prefixed ``<region>__``.
    bin_width : float, default=25.0
        PyRadiomics' binWidth for the discretized features (Entropy, Uniformity), on the
        channel's 0..255 scale.
    backend : {"fast", "pyradiomics"}, default="fast"
        ``"fast"`` computes PyRadiomics' features with vectorized numpy, agreeing with it
        to floating-point rounding (see ``benchmarks/radiomics_speed.py``);
        ``"pyradiomics"`` calls PyRadiomics' feature extractor, the reference, which is
        orders of magnitude slower on a ragged tissue mask.
    n_jobs : int or None, default=None
        Tiles processed in parallel (joblib semantics: None is 1, -1 all cores).
    cache : "auto", path or None, default="auto"
        Where per-tile features are cached: ``"auto"`` is ``$HIERCLS_CACHE_DIR`` or
        ``~/.cache/hiercls``; None turns caching off.
    verbose : int, default=0
        Show a progress bar over tiles when > 0.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns of the ``X`` seen in ``fit``.
    feature_names_in_ : ndarray of str
        Those columns' names.

    See Also
    --------
    hiercls.make_fusion_pipeline : this transformer, standardization and the classifier.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hiercls import RadiomicsTransformer
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"image": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]})
    >>> out = RadiomicsTransformer(mask="full", cache=None).fit_transform(X)
    >>> out.shape
    (1, 30)
    >>> list(out.columns[:3])
    ['image', 'firstorder_10Percentile', 'firstorder_90Percentile']
    """

    def __init__(self, *, channel="gray", mask="tissue", bin_width=25.0, backend="fast",
                 n_jobs=None, cache="auto", verbose=0):
        self.channel = channel
        self.mask = mask
        self.bin_width = bin_width
        self.backend = backend
        self.n_jobs = n_jobs
        self.cache = cache
        self.verbose = verbose

    def _check_params(self):
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}; got {self.channel!r}")
        regions = _region_names(self.mask)
        if not regions or any(region not in MASKS for region in regions):
            raise ValueError(f"mask must be one of {MASKS} or a sequence of them; got {self.mask!r}")
        if len(set(regions)) != len(regions):
            raise ValueError(f"mask lists a region twice: {self.mask!r}")
        if not (isinstance(self.bin_width, (int, float)) and self.bin_width > 0):
            raise ValueError(f"bin_width must be a positive number; got {self.bin_width!r}")
        _backend_function(self.backend)
        resolve_cache_dir(self.cache)

    def _added_feature_names(self):
        return self._radiomic_names()

    def _radiomic_names(self):
        regions = _region_names(self.mask)
        if isinstance(self.mask, str):
            return list(FEATURE_NAMES)
        return [f"{region}__{name}" for region in regions for name in FEATURE_NAMES]

    def fit(self, X, y=None):
        """Check the parameters and record the columns of ``X``.

        Parameters
        ----------
        X : DataFrame
            One row per tile, with an ``image`` column of file paths or RGB arrays.
        y : ignored

        Returns
        -------
        self : RadiomicsTransformer
        """
        self._check_params()
        check_image_frame(X)
        clashing = sorted(set(self._radiomic_names()) & set(map(str, X.columns)))
        if clashing:
            raise ValueError(
                f"X already has radiomic columns {clashing[:3]}...; drop them or leave this "
                "step out of the pipeline"
            )
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def get_fitted_state(self):
        """What ``fit`` learned: ``{"feature_names_in_": list of str}``."""
        check_is_fitted(self, "feature_names_in_")
        return {"feature_names_in_": [str(c) for c in self.feature_names_in_]}

    def set_fitted_state(self, state):
        """The step as :meth:`get_fitted_state` described it, checked by ``fit`` on one
        blank tile of those columns; returns self."""
        columns = state["feature_names_in_"]
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ValueError(f"radiomics feature_names_in_ must be a list of str; got {columns!r}")
        frame = pd.DataFrame({column: [0.0] for column in columns})
        if IMAGE_COLUMN in frame:
            frame[IMAGE_COLUMN] = [np.zeros((2, 2, 3), dtype=np.uint8)]
        return self.fit(frame)

    def transform(self, X):
        """Return ``X`` with the radiomic columns appended.

        Parameters
        ----------
        X : DataFrame
            The same columns as in ``fit``.

        Returns
        -------
        X_out : DataFrame
            ``X``'s columns followed by the radiomic ones (float64), same index.
        """
        check_is_fitted(self, "feature_names_in_")
        check_image_frame(X)
        columns = [str(c) for c in X.columns]
        if columns != list(self.feature_names_in_):
            raise ValueError(
                f"X has columns {columns}, but RadiomicsTransformer was fitted on "
                f"{list(self.feature_names_in_)}"
            )
        # Declared pixel sizes (after TileResampler: the training mpp) are the physical
        # spacing of the shape features.
        spacings = (X[MPP_COLUMN].astype(float).tolist() if MPP_COLUMN in X.columns
                    else None)
        features = self._extract(X[IMAGE_COLUMN].tolist(), spacings)
        radiomics = pd.DataFrame(features, columns=self._radiomic_names(), index=X.index)
        return pd.concat([X, radiomics], axis=1)

    def _settings(self):
        return {"channel": self.channel, "mask": list(_region_names(self.mask)),
                "bin_width": float(self.bin_width), "backend": self.backend,
                "version": _FEATURE_VERSION}

    def _extract(self, tiles, spacings=None):
        settings = self._settings()
        folder = resolve_cache_dir(self.cache)
        cache = ArrayCache(folder, "radiomics", settings) if folder is not None else None
        n_columns = len(self._radiomic_names())
        features = np.empty((len(tiles), n_columns), dtype=np.float64)
        todo = list(range(len(tiles)))
        digests = {}
        if cache is not None:
            todo = []
            for index, tile in enumerate(tiles):
                digests[index] = tile_digest(tile)
                if spacings is not None:
                    # Another spacing, other shape features; without one, the old keys.
                    digests[index] += f"-mpp{float(spacings[index])!r}"
                cached = cache.get(digests[index])
                if cached is not None and cached.shape == (n_columns,):
                    features[index] = cached
                else:
                    todo.append(index)
        fell_back = 0
        if todo:
            keywords = dict(channel=self.channel, mask=self.mask,
                            bin_width=float(self.bin_width), backend=self.backend)
            jobs = (delayed(tile_radiomics)(
                tiles[index], **keywords,
                spacing=1.0 if spacings is None else float(spacings[index])) for index in todo)
            results = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)
            progress = tqdm(results, total=len(todo), desc="radiomics", unit="tile",
                            disable=not self.verbose)
            for index, (values, degenerate) in zip(todo, progress):
                features[index] = values
                fell_back += degenerate
                if cache is not None:
                    cache.put(digests[index], values)
        if fell_back:
            warnings.warn(
                f"{fell_back} thresholded mask(s) of {len(todo)} computed tile(s) were degenerate "
                "(constant tile or fewer than 2 pixels per axis); those features describe "
                "the whole tile",
                RadiomicsMaskWarning,
                stacklevel=3,
            )
        return features
