"""Temperature scaling: one number that makes a classifier's probabilities honest.

A network trained with cross-entropy is often over-confident on patients it has not seen
(probabilities near 0 or 1 that are wrong too often). Temperature scaling divides the log
probabilities by one ``T > 0`` and renormalizes,

    calibrated = softmax(log(proba) / T),

with ``T`` chosen to minimize the log-loss on held-out tiles (e.g. out-of-fold
probabilities of :func:`~hiercls.evaluation.cross_validation.cross_validate_by_patient`).
``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens timid ones; the ranking of
the classes in every tile, hence the argmax and the AUCs, stays the same.
"""


import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.base import BaseEstimator
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


def _log_loss(log_p, codes, temperature):
    return -log_softmax(log_p / temperature, axis=1)[np.arange(codes.size), codes].mean()


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
        The interval searched (bounded scalar minimization, :func:`scipy.optimize.minimize_scalar`).

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
    # The log-loss is smoother in log T than in T.
    result = minimize_scalar(lambda log_t: _log_loss(log_p, codes, np.exp(log_t)),
                             bounds=(np.log(low), np.log(high)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.clip(np.exp(result.x), low, high))


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
