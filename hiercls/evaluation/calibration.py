"""Temperature scaling: one number that makes a classifier's probabilities honest.

A network trained with cross-entropy is often over-confident on patients it has not seen
(probabilities near 0 or 1 that are wrong too often). Temperature scaling divides the log
probabilities by one ``T > 0`` and renormalizes,

    calibrated = softmax(log(proba) / T),

with ``T`` chosen to minimize the log-loss on held-out tiles (e.g. out-of-fold
probabilities of :func:`~hiercls.evaluation.cross_validation.cross_validate_by_patient`).
``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens timid ones; the ranking of
the classes in every tile, hence the argmax and the AUCs, stays the same.

The fit is scikit-learn's: :class:`sklearn.calibration.CalibratedClassifierCV` with
``method="temperature"`` on a :class:`sklearn.frozen.FrozenEstimator` whose scores are the
given log probabilities. Only the probabilities, not a model, are needed here, so that frozen
estimator is a pass-through of its input.
"""


import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from ..data.labels import CLASS_NAMES, encode_labels
from ..validation import check_number

__all__ = ["TemperatureScaling", "apply_temperature", "fit_temperature"]

#: The range searched for the temperature.
TEMPERATURE_BOUNDS = (0.05, 20.0)

# Zero probabilities have no logarithm; they become this small instead.
_EPS = 1e-12


def _log_proba(proba, name="proba"):
    try:
        p = np.asarray(proba, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric probabilities of shape (n_samples, 3)") from None
    if p.ndim != 2 or p.shape[1] != len(CLASS_NAMES) or p.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n_samples, {len(CLASS_NAMES)}) with columns "
                         f"{list(CLASS_NAMES)} and at least one row; got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0 + 1e-6:
        raise ValueError(f"{name} must hold finite probabilities in [0, 1]")
    return np.log(np.clip(p, _EPS, None))


def _check_temperature(temperature):
    check_number(temperature, "temperature", low=0.0, closed="neither",
                 expected="a finite number > 0")
    return float(temperature)


class _GivenLogProbabilities(ClassifierMixin, BaseEstimator):
    """A "classifier" whose decision function is its input: log probabilities already computed.

    Given as ``decision_function`` rather than ``predict_proba``: scikit-learn takes the log of
    ``predict_proba`` output only when its rows sum to 1, and these rows need not (the
    old hand-written fit took the log of any probabilities in [0, 1]).
    """

    def fit(self, X, y=None):
        self.classes_ = np.arange(len(CLASS_NAMES))
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype=float)

    def predict(self, X):
        return self.decision_function(X).argmax(axis=1)


def apply_temperature(proba, temperature):
    """Probabilities at another temperature: ``softmax(log(proba) / temperature)``.

    Parameters
    ----------
    proba : array-like of shape (n_samples, 3)
        Class probabilities in code order.
    temperature : float > 0
        1 leaves the probabilities as they are (renormalized); above 1 softens them.

    Returns
    -------
    ndarray of shape (n_samples, 3)

    Examples
    --------
    >>> from hiercls.evaluation.calibration import apply_temperature
    >>> apply_temperature([[0.8, 0.1, 0.1]], 2.0).round(3)
    array([[0.586, 0.207, 0.207]])
    """
    log_p = _log_proba(proba)
    return np.exp(log_softmax(log_p / _check_temperature(temperature), axis=1))


def fit_temperature(proba, y, *, bounds=TEMPERATURE_BOUNDS):
    """The temperature that minimizes the log-loss of the rescaled probabilities.

    Parameters
    ----------
    proba : array-like of shape (n_samples, 3)
        Held-out class probabilities in code order.
    y : array-like of shape (n_samples,)
        The true labels, as codes (0, 1, 2) or class names.
    bounds : tuple of two floats, default=(0.05, 20.0)
        The interval the temperature is confined to. The log-loss is minimized by
        :class:`~sklearn.calibration.CalibratedClassifierCV` (``method="temperature"``,
        the probabilities as a :class:`~sklearn.frozen.FrozenEstimator`'s scores) and the
        result clipped to ``bounds``.

    Returns
    -------
    float
        ``T > 0``. A value at a bound means the optimum lies at or beyond it (e.g.
        probabilities that are always right want ``T`` as small as allowed).

    Examples
    --------
    >>> from hiercls.evaluation.calibration import fit_temperature
    >>> proba = [[0.98, 0.01, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]]
    >>> y = [0, 1, 1, 2]  # over-confident: one tile in four is wrong at 98 %
    >>> fit_temperature(proba, y) > 1
    True
    """
    log_p = _log_proba(proba)
    codes, _ = encode_labels(y)
    if codes.size != log_p.shape[0]:
        raise ValueError(f"y has {codes.size} labels but proba has {log_p.shape[0]} rows; "
                         "expected one label per row")
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be two numbers (low, high); got {bounds!r}") from None
    if not (0.0 < low < high < np.inf):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf; got {bounds!r}")
    # A frozen estimator learns nothing, so one "fold" that holds every tile suffices (the
    # default 5-fold split refuses fewer than 5 tiles). ensemble=True fits the calibrator on
    # that fold's scores as they are; the default path re-orders them by the classes in y
    # and fails when a class is absent, as it often is in one patient's tiles.
    every = np.arange(codes.size)
    calibrator = CalibratedClassifierCV(FrozenEstimator(_GivenLogProbabilities().fit(log_p)),
                                        method="temperature", cv=[(every, every)], ensemble=True)
    # Codes, not names: scikit-learn uses the labels as column indices of log_p.
    calibrator.fit(log_p, codes)
    beta = float(calibrator.calibrated_classifiers_[0].calibrators[0].beta_)
    # scikit-learn fits the inverse temperature over a wide fixed range; the log-loss is
    # unimodal in it, so the optimum within ``bounds`` is the clipped overall optimum.
    return float(np.clip(1.0 / beta, low, high))


class TemperatureScaling(BaseEstimator):
    """Temperature scaling of 3-class probabilities, fitted on held-out probabilities.

    Parameters
    ----------
    bounds : tuple of two floats, default=(0.05, 20.0)
        The interval searched for the temperature.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature (see :func:`fit_temperature`).

    See Also
    --------
    fit_temperature, apply_temperature

    Examples
    --------
    >>> from hiercls.evaluation.calibration import TemperatureScaling
    >>> proba = [[0.98, 0.01, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]]
    >>> scaling = TemperatureScaling().fit(proba, [0, 1, 1, 2])
    >>> calibrated = scaling.predict_proba(proba)
    >>> bool(calibrated[:, 0].max() < 0.98)
    True
    """

    def __init__(self, bounds=TEMPERATURE_BOUNDS):
        self.bounds = bounds

    def fit(self, proba, y):
        """Fit the temperature on held-out probabilities and labels.

        Parameters
        ----------
        proba : array-like of shape (n_samples, 3)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : TemperatureScaling
        """
        self.temperature_ = fit_temperature(proba, y, bounds=self.bounds)
        return self

    def predict_proba(self, proba):
        """The probabilities at the fitted temperature.

        Parameters
        ----------
        proba : array-like of shape (n_samples, 3)

        Returns
        -------
        ndarray of shape (n_samples, 3)
        """
        check_is_fitted(self, "temperature_")
        return apply_temperature(proba, self.temperature_)

    def transform(self, proba):
        """Same as :meth:`predict_proba`, for use inside a pipeline.

        Parameters
        ----------
        proba : array-like of shape (n_samples, 3)

        Returns
        -------
        ndarray of shape (n_samples, 3)
        """
        return self.predict_proba(proba)
