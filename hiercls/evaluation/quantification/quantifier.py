"""The quantifier: a bag's class prevalences from the pipeline's posteriors, through QuaPy."""


import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ...data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ...exceptions import SingularAdjustmentError
from ...validation import check_groups
from ..calibration import apply_temperature, fit_temperature

#: The quantification methods, QuaPy's names in lower case. ``"cc"`` and ``"pcc"`` need no
#: calibration set (they are the argmax and the expected counts); the others do.
METHODS = ("cc", "pcc", "acc", "pacc", "emq", "dmy", "kdey")

#: The methods that learn from a calibration set (out-of-fold posteriors with labels).
ADJUSTED_METHODS = ("acc", "pacc", "emq", "dmy", "kdey")

#: The method the criterion (:func:`choose_setting` on :func:`quantification_scores`:
#: leave-one-slide-out and the artificial prevalence protocol on the training patients'
#: out-of-fold predictions) chose most often over the folds and seeds of
#: ``benchmarks/necrosis.py``, on the radiomic features alone (``preset="necrosis"``);
#: ``benchmarks/results/necrosis.md`` has every fold's choice and what each method scored
#: on the unseen patient (tests/estimator/test_presets.py holds the two together).
DEFAULT_METHOD = "dmy"

#: Whether posteriors are recalibrated before quantifying (:class:`PrevalenceQuantifier`).
RECALIBRATIONS = (None, "temperature")

#: The recalibration the criterion chose with :data:`DEFAULT_METHOD` most often.
DEFAULT_RECALIBRATE = None

#: How :func:`out_of_fold_proba` splits the training tiles into folds.
CALIBRATION_GROUPINGS = ("tiles", "slide", "patient")

_NEC, _VIA = 1, 2  # codes of Non-Viable-Tumor (necrosis) and Viable-Tumor
# A rate matrix this ill-conditioned has no useful inverse: ACC/PACC would amplify noise
# without bound (two classes the classifier cannot tell apart).
_MAX_CONDITION = 1e6


class _Posteriors(ClassifierMixin, BaseEstimator):
    """A "classifier" whose input is already its posteriors: how QuaPy's aggregative
    methods take probabilities that hiercls computed, without refitting a model."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=float)

    def predict(self, X):
        return self.classes_[np.asarray(X).argmax(axis=1)]


def _quapy_method(method):
    # Imported here: QuaPy pulls in its own dependencies, needed only when quantifying.
    from quapy.method import aggregative as qa

    return {"cc": qa.CC, "pcc": qa.PCC, "acc": qa.ACC, "pacc": qa.PACC, "emq": qa.EMQ,
            "dmy": qa.DMy, "kdey": qa.KDEyML}[method]


def _check_method(method):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    return method


def necrotic_fraction(prevalence):
    """``NV / (NV + V)`` of three-class prevalences (rows of shape (..., 3)); NaN without tumor.

    Examples
    --------
    >>> from hiercls.evaluation.quantification import necrotic_fraction
    >>> float(necrotic_fraction([0.5, 0.4, 0.1]))
    0.8
    >>> float(necrotic_fraction([1.0, 0.0, 0.0]))
    nan
    """
    p = np.asarray(prevalence, dtype=float)
    tumor = p[..., _NEC] + p[..., _VIA]
    out = np.full(tumor.shape, np.nan)
    np.divide(p[..., _NEC], tumor, out=out, where=tumor > 1e-12)
    return out


class PrevalenceQuantifier(BaseEstimator):
    """Estimate the class prevalences of a bag of tiles from their posteriors.

    Fitted on a *calibration set*: posteriors of tiles the classifier did not train on
    (:func:`out_of_fold_proba`) with their labels. :meth:`quantify` then turns the
    posteriors of any bag (a patient's, a slide's tiles) into the three class prevalences,
    corrected for the calibration set's class mix and the classifier's errors as the method
    prescribes.

    Parameters
    ----------
    method : {"cc", "pcc", "acc", "pacc", "emq", "dmy", "kdey"}, default=DEFAULT_METHOD
        QuaPy's aggregative method (see the module docstring). ``"cc"`` and ``"pcc"``
        ignore the calibration set's rates.
    recalibrate : {None, "temperature"}, default=DEFAULT_RECALIBRATE
        ``"temperature"`` first fits a temperature to the calibration posteriors
        (:func:`~hiercls.evaluation.calibration.fit_temperature`, the log-loss on held-out
        tiles) and rescales those and every bag's posteriors with it. EMQ in particular
        assumes calibrated posteriors: a network's over-confident ones stop its iterations
        short of the bag's prior.

    Attributes
    ----------
    classes_ : ndarray of shape (3,)
        The class codes 0, 1, 2.
    calibration_proba_ : ndarray of shape (n_calibration, 3)
        The calibration posteriors as given, before any temperature (kept: the bootstrap
        resamples them, and a model file saves them).
    calibration_labels_ : ndarray of shape (n_calibration,)
        Their class codes.
    calibration_groups_ : ndarray of shape (n_calibration,) or None
        The slide (or other group) of each calibration tile as integer codes, when
        :meth:`fit` was given ``groups``: :meth:`bootstrap` then resamples whole groups.
    training_prevalence_ : ndarray of shape (3,)
        The calibration set's class prevalences.
    rates_ : ndarray of shape (3, 3)
        ``rates_[j, i]``: mean posterior of class ``j`` over calibration tiles of class
        ``i`` (the matrix PACC inverts; ACC inverts its argmax version).
    quantifier_ : quapy aggregative quantifier
        The fitted QuaPy object.
    temperature_ : float
        The fitted temperature (1.0 without ``recalibrate``).

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.evaluation.quantification import PrevalenceQuantifier
    >>> rng = np.random.default_rng(0)
    >>> def posteriors(labels):  # a classifier right about 70 % of the time
    ...     p = np.full((labels.size, 3), 0.15)
    ...     p[np.arange(labels.size), labels] = 0.7
    ...     return p
    >>> calibration = rng.integers(0, 3, 600)               # a third of each class
    >>> bag = np.repeat([0, 1, 2], [20, 70, 10])            # mostly necrotic
    >>> quantifier = PrevalenceQuantifier("pacc").fit(posteriors(calibration), calibration)
    >>> np.round(quantifier.quantify(posteriors(bag)), 2)
    array([0.2, 0.7, 0.1])
    >>> np.round(posteriors(bag).mean(axis=0), 2)            # the expected counts, shrunk
    array([0.26, 0.54, 0.21])
    """

    def __init__(self, method=DEFAULT_METHOD, recalibrate=DEFAULT_RECALIBRATE):
        self.method = method
        self.recalibrate = recalibrate

    def fit(self, proba, y, groups=None):
        """Learn the adjustment from calibration posteriors ``proba`` and labels ``y``.

        Parameters
        ----------
        proba : array-like of shape (n_calibration, 3)
            Held-out posteriors of the calibration tiles.
        y : array-like of shape (n_calibration,)
            Their labels.
        groups : array-like of shape (n_calibration,), default=None
            The slide of each tile (the groups its out-of-fold posteriors were made by).
            It changes no estimate: :meth:`bootstrap` resamples whole slides of the
            calibration set, since the misclassification rates differ from slide to slide
            and tiles of one slide are not independent draws.

        Raises
        ------
        SingularAdjustmentError
            If a class has no calibration tile, or (ACC, PACC) the misclassification
            matrix is singular or nearly so.
        """
        method = _check_method(self.method)
        if self.recalibrate not in RECALIBRATIONS:
            raise ValueError(f"recalibrate must be one of {list(RECALIBRATIONS)}; got "
                             f"{self.recalibrate!r}")
        p = check_probabilities(proba, name="calibration proba")
        codes, _ = encode_labels(y, name="calibration y")
        if codes.size != p.shape[0]:
            raise ValueError(f"calibration y has {codes.size} labels but calibration proba has "
                             f"{p.shape[0]} rows; expected one label per row")
        group_codes = None if groups is None else check_groups(
            groups, p.shape[0], "calibration groups", "slide")[0]
        counts = np.bincount(codes, minlength=len(CLASS_NAMES))
        if method in ADJUSTED_METHODS and (counts == 0).any():
            missing = [CLASS_NAMES[c] for c in np.flatnonzero(counts == 0)]
            raise SingularAdjustmentError(
                f"method={method!r} needs calibration tiles of every class; the calibration "
                f"set has none of {missing}. Use a calibration set with all three classes, "
                "or method='pcc'")
        # The posteriors as given are kept (the bootstrap refits the temperature too); the
        # adjustment learns from the rescaled ones.
        self.calibration_proba_ = p
        self.temperature_ = 1.0
        if self.recalibrate == "temperature":
            self.temperature_ = fit_temperature(p, codes)
            p = apply_temperature(p, self.temperature_)
        # A class without calibration tiles (which only the counts accept) gets zeros.
        rates = np.nan_to_num(class_rates(p, codes))
        if method in ("acc", "pacc"):
            matrix = rates if method == "pacc" else _crisp_rates(p, codes)
            condition = np.linalg.cond(matrix)
            if not np.isfinite(condition) or condition > _MAX_CONDITION:
                raise SingularAdjustmentError(
                    f"method={method!r}: the misclassification matrix of the calibration set "
                    f"is singular (condition number {condition:.3g}): the classifier's "
                    "predictions do not tell the classes apart; use method='pcc' or 'emq'")
        self.classes_ = np.arange(len(CLASS_NAMES))
        self.calibration_labels_ = codes
        self.calibration_groups_ = group_codes
        self.training_prevalence_ = counts / counts.sum()
        self.rates_ = rates
        self.quantifier_ = _fit_quapy(method, p, codes)
        return self

    def quantify(self, proba):
        """The three class prevalences of the bag whose posteriors are ``proba``.

        Parameters
        ----------
        proba : array-like of shape (n_tiles, 3)
            The bag's posteriors (from the same classifier as the calibration set).

        Returns
        -------
        ndarray of shape (3,)
            Prevalences of Non-Tumor, Non-Viable-Tumor and Viable-Tumor, summing to 1.
        """
        check_is_fitted(self, "quantifier_")
        p = self._rescaled(check_probabilities(proba))
        return _aggregate(self.quantifier_, self.method, p)

    def _rescaled(self, p, temperature=None):
        temperature = self.temperature_ if temperature is None else temperature
        return p if temperature == 1.0 else apply_temperature(p, temperature)

    def get_fitted_state(self):
        """What a model file keeps of the fitted quantifier: its parameters and its
        calibration set (plain lists; :meth:`set_fitted_state` refits from them, which
        gives the same adjustment, since fitting is deterministic)."""
        check_is_fitted(self, "quantifier_")
        groups = self.calibration_groups_
        return {"method": self.method, "recalibrate": self.recalibrate,
                "calibration_proba_": self.calibration_proba_.tolist(),
                "calibration_labels_": self.calibration_labels_.tolist(),
                "calibration_groups_": None if groups is None else groups.tolist()}

    def set_fitted_state(self, state):
        """Restore a quantifier from :meth:`get_fitted_state`; returns ``self``."""
        if not isinstance(state, dict) or not {"method", "recalibrate", "calibration_proba_",
                                               "calibration_labels_"} <= set(state):
            raise ValueError("the quantifier's state must be a dict with method, recalibrate, "
                             "calibration_proba_ and calibration_labels_")
        self.set_params(method=state["method"], recalibrate=state["recalibrate"])
        # Files written before the groups were kept have none: tiles are resampled then.
        return self.fit(np.asarray(state["calibration_proba_"], dtype=float),
                        np.asarray(state["calibration_labels_"], dtype=np.int64),
                        groups=state.get("calibration_groups_"))

    def necrotic_fraction(self, proba):
        """``NV / (NV + V)`` of :meth:`quantify` (NaN where it finds no tumor)."""
        return float(necrotic_fraction(self.quantify(proba)))

    def bootstrap(self, proba, n_bootstrap, *, random_state=0, member_proba=None, groups=None):
        """Prevalences of ``n_bootstrap`` resamples of the bag *and* the calibration set.

        Each replicate draws the bag with replacement (and, with ``member_proba`` of shape
        (n_members, n_tiles, 3), one ensemble member whose posteriors it uses), and refits
        the adjustment on a resample of the calibration set: the interval holds the
        sampling of the bag, the estimated misclassification rates and the seeds.

        Tiles of one slide share their stain, cut and share of necrosis, so they are not
        independent draws: where slides are known the bootstrap resamples whole slides
        (a cluster bootstrap), of the bag with ``groups`` and of the calibration set with
        the ``groups`` given to :meth:`fit`; redrawn until every class of the calibration
        set is represented. Without them, or where a bag holds a single slide (the slide
        is then the whole bag), it resamples tiles, the calibration set's within each class.

        Parameters
        ----------
        proba : array-like of shape (n_tiles, 3)
            The bag's posteriors.
        n_bootstrap : int
            Replicates.
        random_state : int, RandomState or None, default=0
            Seeds the resampling.
        member_proba : ndarray of shape (n_members, n_tiles, 3), default=None
            Each ensemble member's posteriors of the bag.
        groups : array-like of shape (n_tiles,), default=None
            The slide of each of the bag's tiles.

        Returns
        -------
        ndarray of shape (n_bootstrap, 3)

        Raises
        ------
        SingularAdjustmentError
            If no resample of the calibration set's slides in 1000 draws holds every class.
        """
        check_is_fitted(self, "quantifier_")
        p = check_probabilities(proba)
        bag_slides = None if groups is None else _slides(
            check_groups(groups, p.shape[0], "groups", "slide")[0])
        calibration_slides = _slides(self.calibration_groups_)
        rng = check_random_state(random_state)
        labels = self.calibration_labels_
        by_class = [np.flatnonzero(labels == c) for c in self.classes_]
        out = np.empty((n_bootstrap, 3))
        adjusted = self.method in ADJUSTED_METHODS
        for b in range(n_bootstrap):
            bag = p if member_proba is None else member_proba[rng.randint(len(member_proba))]
            bag = bag[_resample(bag_slides, p.shape[0], rng)]
            quantifier, temperature = self.quantifier_, self.temperature_
            if adjusted:
                rows = _calibration_resample(calibration_slides, labels, by_class, rng)
                calibration = self.calibration_proba_[rows]
                if self.recalibrate == "temperature":
                    temperature = fit_temperature(calibration, labels[rows])
                    calibration = apply_temperature(calibration, temperature)
                quantifier = _fit_quapy(self.method, calibration, labels[rows])
            out[b] = _aggregate(quantifier, self.method, self._rescaled(bag, temperature))
        return out


def _slides(codes):
    """The row indices of each slide, from integer codes; None where there are fewer
    than two slides to resample (then rows are resampled one by one)."""
    if codes is None or codes.size == 0 or codes.max() == 0:
        return None
    return np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])


def _resample(slides, n_rows, rng):
    """Row indices of a bootstrap resample: whole ``slides`` (from :func:`_slides`), or
    single rows where it is None."""
    if slides is None:
        return rng.randint(0, n_rows, n_rows)
    return np.concatenate([slides[k] for k in rng.randint(0, len(slides), len(slides))])


def _calibration_resample(slides, labels, by_class, rng):
    """Rows of one resample of the calibration set: whole slides, redrawn until every
    class present in ``labels`` is represented; without slides, tiles within each class
    (``by_class``: the rows of each class)."""
    if slides is None:
        return np.concatenate([idx[rng.randint(0, idx.size, idx.size)]
                               for idx in by_class if idx.size])
    present = sum(idx.size > 0 for idx in by_class)
    for _ in range(1000):
        rows = _resample(slides, labels.size, rng)
        if np.unique(labels[rows]).size == present:
            return rows
    raise SingularAdjustmentError(
        "no resample of the calibration set's groups in 1000 draws held every class: a "
        "class lies in too few slides for a bootstrap by slide; fit without groups")


def class_rates(values, codes):
    """``rates[j, i]``: the mean of ``values[:, j]`` over the rows of class ``i`` (NaN
    where ``codes`` holds no row of ``i``): posteriors give the matrix PACC inverts,
    one-hot votes ACC's."""
    rates = np.full((values.shape[1], len(CLASS_NAMES)), np.nan)
    for c in np.unique(codes):
        rates[:, c] = values[codes == c].mean(axis=0)
    return rates


def _crisp_rates(p, codes):
    votes = np.eye(p.shape[1])[p.argmax(axis=1)]
    return np.nan_to_num(class_rates(votes, codes))


def _fit_quapy(method, p, codes):
    """A QuaPy quantifier fitted on posteriors ``p`` of labels ``codes`` (held-out ones)."""
    cls = _quapy_method(method)
    passthrough = _Posteriors().fit(p, np.arange(len(CLASS_NAMES)))
    options = {"classifier": passthrough, "fit_classifier": False}
    if method in ("acc", "pacc", "dmy", "kdey"):
        # The posteriors are held-out already: QuaPy needs no split of its own.
        options["val_split"] = None
    if method == "kdey":
        options["random_state"] = 0
    quantifier = cls(**options)
    with warnings.catch_warnings():
        # QuaPy notes that a pre-trained classifier's val_split is not used: ours is None.
        warnings.filterwarnings("ignore", message=".*val_split.*", category=UserWarning)
        quantifier.fit(p, codes)
    return quantifier


def _aggregate(quantifier, method, p):
    with np.errstate(divide="ignore", invalid="ignore"):
        prevalence = np.asarray(quantifier.quantify(p), dtype=float)
    prevalence = np.clip(prevalence, 0.0, None)
    total = prevalence.sum()
    if not np.isfinite(total) or total <= 0:
        raise SingularAdjustmentError(f"method={method!r} found no prevalence for this bag "
                                      f"(got {prevalence.tolist()})")
    return prevalence / total
