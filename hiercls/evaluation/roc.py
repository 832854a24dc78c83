"""ROC curves read at operating points: the per-class figures of the paper's table.

Sensitivity at 90 % specificity (Sen@Spe90) and specificity at 90 % sensitivity
(Spe@Sen90) are read off the ROC points of every distinct threshold (no interpolation),
with the slack :data:`ROC_TOLERANCE`. :mod:`hiercls.evaluation.metrics` builds the table
from them and re-exports the public names.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import auc, roc_curve

from ..exceptions import UndefinedMetricWarning
from ..validation import check_number

__all__ = [
    "ROC_TOLERANCE",
    "operating_point",
    "roc_auc_from_points",
    "roc_points",
    "sensitivity_at_specificity",
    "sensitivity_from_points",
    "specificity_at_sensitivity",
    "specificity_from_points",
]

#: ROC points are compared to the specificity / sensitivity targets with this slack, so
#: that e.g. FPR = 1/10 counts as "specificity >= 0.9" although 1 - 0.9 < 0.1 in floats.
ROC_TOLERANCE = 1e-9



def _check_fraction(value, name):
    return check_number(value, name, low=0.0, high=1.0)


def _check_binary(y_binary, score):
    """Validate a binary target and a score of the same length; return them as arrays."""
    y = np.asarray(y_binary.to_numpy() if isinstance(y_binary, (pd.Series, pd.Index)) else y_binary)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"y_binary must be a non-empty one-dimensional array of 0/1 (or bool); got shape {y.shape}"
        )
    if y.dtype == bool:
        y = y.astype(np.int64)
    else:
        try:
            numeric = y.astype(float)
        except (TypeError, ValueError):
            raise ValueError(
                f"y_binary must hold 0/1 (or bool); got values like {y[0]!r}"
            ) from None
        bad = ~np.isin(numeric, (0.0, 1.0))
        if bad.any():
            raise ValueError(
                f"y_binary must hold 0/1 (or bool); got {y[bad][0]!r}. For multi-class labels "
                "use paper_metrics or binarize with (y == class) first"
            )
        y = numeric.astype(np.int64)
    s = np.asarray(score, dtype=float)
    if s.shape != y.shape:
        raise ValueError(f"score must have shape {y.shape} like y_binary; got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("score contains NaN or infinite values")
    return y, s


def _roc_points(y, s):
    """(FPR, TPR, thresholds) of validated inputs with both classes; see :func:`roc_points`."""
    # Every point kept: a dropped collinear point could be the operating point asked for.
    return roc_curve(y, s, drop_intermediate=False)


def roc_points(y_binary, score):
    """The ROC curve the metrics here read: (FPR, TPR) at every distinct threshold.

    From (0, 0) (a threshold above every score) to (1, 1); no collinear point is dropped
    (unlike ``roc_curve``'s default), so no operating point is lost. These are
    ``sklearn.metrics.roc_curve(y_binary, score, drop_intermediate=False)``, after checking
    the inputs and that both classes occur.

    Parameters
    ----------
    y_binary : array-like of shape (n_samples,)
        1 (or True) for positives, 0 (or False) for negatives; both must occur.
    score : array-like of shape (n_samples,)
        Higher means more likely positive.

    Returns
    -------
    fpr, tpr : ndarray of shape (n_thresholds + 1,)
        Non-decreasing false- and true-positive rates.
    thresholds : ndarray of shape (n_thresholds + 1,)
        ``score >= thresholds[i]`` gives point ``i``; ``thresholds[0]`` is ``inf``.

    Raises
    ------
    ValueError
        If the inputs are invalid or ``y_binary`` lacks positives or negatives (the
        curve is undefined).

    Examples
    --------
    >>> from hiercls.evaluation.roc import roc_points
    >>> fpr, tpr, thresholds = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y, s = _check_binary(y_binary, score)
    reason = _binary_undefined_reason(y)
    if reason is not None:
        raise ValueError(f"the ROC curve is undefined: {reason}")
    return _roc_points(y, s)


def operating_point(fpr, tpr, specificity=0.9):
    """The ROC point with the highest sensitivity among those with specificity >= ``specificity``.

    Specificity is compared with the slack :data:`ROC_TOLERANCE`, so that e.g. FPR 1/10
    counts as specificity 0.9. Among points of equal sensitivity the first (lowest FPR).

    Parameters
    ----------
    fpr, tpr : array-like of shape (n_points,)
        ROC points, as :func:`roc_points` gives them (the first is (0, 0)).
    specificity : float, default=0.9

    Returns
    -------
    fpr, sensitivity : float
        The point; ``sensitivity`` is :func:`sensitivity_at_specificity`'s value.

    Examples
    --------
    >>> from hiercls.evaluation.roc import operating_point
    >>> operating_point([0.0, 0.1, 0.5, 1.0], [0.0, 0.6, 0.9, 1.0], specificity=0.9)
    (0.1, 0.6)
    """
    specificity = _check_fraction(specificity, "specificity")
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    allowed = fpr <= 1.0 - specificity + ROC_TOLERANCE
    best = tpr[allowed].max()
    at = np.flatnonzero(allowed & (tpr == best))[0]
    return float(fpr[at]), float(best)


def sensitivity_from_points(fpr, tpr, specificity):
    """Sensitivity of :func:`operating_point` on ROC points (see :func:`roc_points`)."""
    return operating_point(fpr, tpr, specificity)[1]


def specificity_from_points(fpr, tpr, sensitivity):
    """Highest specificity among ROC points with sensitivity >= ``sensitivity`` (with the
    slack :data:`ROC_TOLERANCE`)."""
    return float(1.0 - fpr[tpr >= sensitivity - ROC_TOLERANCE].min())


def roc_auc_from_points(fpr, tpr):
    """Area under ROC points by the trapezoidal rule (ties count half): :func:`sklearn.metrics.auc`.

    >>> from hiercls.evaluation.roc import roc_auc_from_points
    >>> roc_auc_from_points([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    0.75
    """
    return float(auc(np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)))


def _binary_undefined_reason(y):
    n_pos = int(y.sum())
    if n_pos == 0:
        return "y_binary has no positives"
    if n_pos == y.size:
        return "y_binary has no negatives"
    return None


def sensitivity_at_specificity(y_binary, score, specificity=0.9):
    """Highest sensitivity (TPR) among ROC points with specificity >= ``specificity``.

    The ROC points are those of every distinct threshold on ``score`` (no interpolation
    between them), plus the point (FPR 0, TPR 0) of a threshold above every score.

    Parameters
    ----------
    y_binary : array-like of shape (n_samples,)
        1 (or True) for positives, 0 (or False) for negatives.
    score : array-like of shape (n_samples,)
        Higher means more likely positive, e.g. a class probability.
    specificity : float, default=0.9
        The least specificity (1 - FPR) a point must reach.

    Returns
    -------
    float
        The sensitivity, or NaN with an :class:`UndefinedMetricWarning` when ``y_binary``
        has no positives or no negatives.

    Examples
    --------
    >>> from hiercls.evaluation.roc import sensitivity_at_specificity
    >>> y = [0] * 10 + [1] * 4
    >>> score = [0.1] * 9 + [0.7] + [0.6, 0.8, 0.9, 0.95]
    >>> sensitivity_at_specificity(y, score)  # threshold 0.6: FPR 1/10, TPR 4/4
    1.0
    >>> sensitivity_at_specificity(y, score, specificity=0.95)  # threshold 0.8: FPR 0, TPR 3/4
    0.75
    """
    return _read_at(y_binary, score, specificity, "specificity", "Sensitivity",
                    sensitivity_from_points)


def specificity_at_sensitivity(y_binary, score, sensitivity=0.9):
    """Highest specificity (1 - FPR) among ROC points with sensitivity >= ``sensitivity``.

    The ROC points are those of every distinct threshold on ``score`` (no interpolation
    between them); the point (FPR 1, TPR 1) of a threshold at the lowest score is always
    among them.

    Parameters
    ----------
    y_binary : array-like of shape (n_samples,)
        1 (or True) for positives, 0 (or False) for negatives.
    score : array-like of shape (n_samples,)
        Higher means more likely positive, e.g. a class probability.
    sensitivity : float, default=0.9
        The least sensitivity (TPR) a point must reach.

    Returns
    -------
    float
        The specificity, or NaN with an :class:`UndefinedMetricWarning` when ``y_binary``
        has no positives or no negatives.

    Examples
    --------
    >>> from hiercls.evaluation.roc import specificity_at_sensitivity
    >>> y = [1] * 10 + [0] * 4
    >>> score = [0.9] * 9 + [0.2] + [0.1, 0.3, 0.5, 0.95]
    >>> specificity_at_sensitivity(y, score)  # threshold 0.9: TPR 9/10, FPR 1/4
    0.75
    """
    return _read_at(y_binary, score, sensitivity, "sensitivity", "Specificity",
                    specificity_from_points)


def _read_at(y_binary, score, target, name, figure, read):
    """``read(fpr, tpr, target)`` on the checked inputs' ROC points; NaN with a warning
    where the curve is undefined (a class absent)."""
    y, s = _check_binary(y_binary, score)
    target = _check_fraction(target, name)
    reason = _binary_undefined_reason(y)
    if reason is not None:
        # stacklevel 3: the caller of the public function.
        warnings.warn(f"{figure} at {name} {target:g} is undefined and set to NaN: {reason}.",
                      UndefinedMetricWarning, stacklevel=3)
        return float("nan")
    return read(*_roc_points(y, s)[:2], target)
