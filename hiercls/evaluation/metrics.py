"""The paper's metrics, as plain functions and as scikit-learn scorers.

Overall figures: accuracy, macro and weighted F1, and the macro one-vs-rest ROC AUC.
Per class (one-vs-rest): sensitivity at 90 % specificity (Sen@Spe90), specificity at 90 %
sensitivity (Spe@Sen90), F1 and ROC AUC.

Labels are given as codes (0, 1, 2) or as the class names of
:data:`hiercls.data.labels.CLASS_NAMES`; probabilities are an array of shape (n_samples, 3)
whose columns follow the code order (Non-Tumor, Non-Viable-Tumor, Viable-Tumor), as
``predict_proba`` of :class:`~hiercls.HierarchicalFusionClassifier` (and of any scikit-learn
classifier fitted on all three classes) returns them.

Evaluation is by patient and patients are not balanced over the classes, so a test fold
may lack whole classes. No metric here raises for that: a figure that is undefined on the
fold is NaN, and each call emits at most one :class:`UndefinedMetricWarning` that names
the undefined figures and the reason.

- A class's AUC, Sen@Spe90 and Spe@Sen90 are undefined when ``y_true`` has no tile of the
  class (no positives) or only tiles of the class (no negatives).
- The macro ROC AUC is undefined when any class's AUC is.
- A class's F1 is undefined when the class is absent from both ``y_true`` and the
  predictions. The macro F1 averages the defined per-class F1s; the weighted F1 weights
  each class by its support in ``y_true``, so an absent class has weight 0.
- Accuracy is always defined.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import auc, make_scorer, roc_curve

from ..data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ..exceptions import UndefinedMetricWarning  # noqa: F401  (its home before)
from ..validation import check_number

__all__ = [
    "UndefinedMetricWarning",
    "operating_point",
    "paper_metrics",
    "paper_scorers",
    "per_class_table",
    "roc_auc_from_points",
    "roc_points",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
]

#: Column names of :func:`per_class_table`, in order.
TABLE_COLUMNS = ("Sen@Spe90", "Spe@Sen90", "F1", "AUC")

# Key stems of the per-class figures in paper_metrics, matching TABLE_COLUMNS.
_PER_CLASS_KEYS = ("sen_at_spe90", "spe_at_sen90", "f1", "auc")
_OVERALL_KEYS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr")
_SLUGS = tuple(name.lower().replace("-", "_") for name in CLASS_NAMES)

#: ROC points are compared to the specificity / sensitivity targets with this slack, so
#: that e.g. FPR = 1/10 counts as "specificity >= 0.9" although 1 - 0.9 < 0.1 in floats.
ROC_TOLERANCE = 1e-9



def _metric_key(stem, code):
    return f"{stem}_{_SLUGS[code]}"


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
    >>> from hiercls.evaluation.metrics import roc_points
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
    >>> from hiercls.evaluation.metrics import operating_point
    >>> operating_point([0.0, 0.1, 0.5, 1.0], [0.0, 0.6, 0.9, 1.0], specificity=0.9)
    (0.1, 0.6)
    """
    specificity = _check_fraction(specificity, "specificity")
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    allowed = fpr <= 1.0 - specificity + ROC_TOLERANCE
    best = tpr[allowed].max()
    at = np.flatnonzero(allowed & (tpr == best))[0]
    return float(fpr[at]), float(best)


def _sen_at_spe(fpr, tpr, specificity):
    return operating_point(fpr, tpr, specificity)[1]


def _spe_at_sen(fpr, tpr, sensitivity):
    return float(1.0 - fpr[tpr >= sensitivity - ROC_TOLERANCE].min())


def roc_auc_from_points(fpr, tpr):
    """Area under ROC points by the trapezoidal rule (ties count half): :func:`sklearn.metrics.auc`.

    >>> from hiercls.evaluation.metrics import roc_auc_from_points
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
    >>> from hiercls.evaluation.metrics import sensitivity_at_specificity
    >>> y = [0] * 10 + [1] * 4
    >>> score = [0.1] * 9 + [0.7] + [0.6, 0.8, 0.9, 0.95]
    >>> sensitivity_at_specificity(y, score)  # threshold 0.6: FPR 1/10, TPR 4/4
    1.0
    >>> sensitivity_at_specificity(y, score, specificity=0.95)  # threshold 0.8: FPR 0, TPR 3/4
    0.75
    """
    y, s = _check_binary(y_binary, score)
    specificity = _check_fraction(specificity, "specificity")
    reason = _binary_undefined_reason(y)
    if reason is not None:
        warnings.warn(f"Sensitivity at specificity {specificity:g} is undefined and set to NaN: "
                      f"{reason}.", UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    return _sen_at_spe(*_roc_points(y, s)[:2], specificity)


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
    >>> from hiercls.evaluation.metrics import specificity_at_sensitivity
    >>> y = [1] * 10 + [0] * 4
    >>> score = [0.9] * 9 + [0.2] + [0.1, 0.3, 0.5, 0.95]
    >>> specificity_at_sensitivity(y, score)  # threshold 0.9: TPR 9/10, FPR 1/4
    0.75
    """
    y, s = _check_binary(y_binary, score)
    sensitivity = _check_fraction(sensitivity, "sensitivity")
    reason = _binary_undefined_reason(y)
    if reason is not None:
        warnings.warn(f"Specificity at sensitivity {sensitivity:g} is undefined and set to NaN: "
                      f"{reason}.", UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    return _spe_at_sen(*_roc_points(y, s)[:2], sensitivity)


def _check_inputs(y_true, proba, y_pred):
    codes, _ = encode_labels(y_true, name="y_true")
    try:
        # Scores suffice: every figure here ranks or takes the argmax.
        p = check_probabilities(proba, scores=True)
    except ValueError as error:
        if "shape" in str(error):
            raise ValueError(f"{error}. A classifier fitted on fewer than three classes gives "
                             "fewer columns") from None
        raise
    if p.shape[0] != codes.size:
        raise ValueError(
            f"proba has {p.shape[0]} rows but y_true has {codes.size} labels; expected one "
            "row per label"
        )
    if y_pred is None:
        pred = p.argmax(axis=1)
    else:
        pred, _ = encode_labels(y_pred, name="y_pred")
        if pred.size != codes.size:
            raise ValueError(
                f"y_pred has {pred.size} labels but y_true has {codes.size}; expected one each"
            )
    return codes, p, pred


def _evaluate(y_true, proba, y_pred=None):
    """All figures as a flat dict, plus the warning message (None when all are defined)."""
    codes, p, pred = _check_inputs(y_true, proba, y_pred)
    n = codes.size
    result = {"accuracy": float(np.mean(codes == pred))}
    per_class = {}
    notes = []
    undefined_auc = False
    f1s, supports = [], []
    for code, name in enumerate(CLASS_NAMES):
        y = (codes == code).astype(np.int64)
        predicted = pred == code
        support = int(y.sum())
        if support == 0 or support == n:
            reason = (f"no {name} tile in y_true: no positives" if support == 0
                      else f"every tile in y_true is {name}: no negatives")
            figures = [_metric_key(stem, code) for stem in ("auc", "sen_at_spe90", "spe_at_sen90")]
            notes.append(f"{', '.join(figures)} ({reason})")
            sen = spe = auc = float("nan")
            undefined_auc = True
        else:
            fpr, tpr, _ = _roc_points(y, p[:, code])
            sen = _sen_at_spe(fpr, tpr, 0.9)
            spe = _spe_at_sen(fpr, tpr, 0.9)
            auc = roc_auc_from_points(fpr, tpr)
        tp = int(np.sum(predicted & (y == 1)))
        fp = int(np.sum(predicted & (y == 0)))
        fn = support - tp
        if tp + fp + fn == 0:
            f1 = float("nan")
            notes.append(f"{_metric_key('f1', code)} ({name} is in neither y_true nor the "
                         "predictions)")
        else:
            f1 = 2.0 * tp / (2.0 * tp + fp + fn)
        f1s.append(f1)
        supports.append(support)
        per_class[code] = {"sen_at_spe90": sen, "spe_at_sen90": spe, "f1": f1, "auc": auc}
    f1s = np.array(f1s)
    defined = ~np.isnan(f1s)
    result["f1_macro"] = float(f1s[defined].mean())
    result["f1_weighted"] = float(np.sum(np.where(defined, f1s, 0.0) * np.array(supports)) / n)
    result["roc_auc_ovr"] = (float("nan") if undefined_auc
                             else float(np.mean([per_class[c]["auc"] for c in per_class])))
    for code in per_class:
        for stem in _PER_CLASS_KEYS:
            result[_metric_key(stem, code)] = per_class[code][stem]
    message = None
    if notes:
        if undefined_auc:
            notes.append("roc_auc_ovr (a class's AUC is undefined)")
        message = "Undefined metrics set to NaN: " + "; ".join(notes) + "."
        if not defined.all():
            message += (f" f1_macro averages the {int(defined.sum())} defined per-class F1 "
                        "scores.")
    return result, message


def _warn(message):
    # One place issues the warning, so Python's default filter shows an identical message
    # (e.g. from several scorers on the same fold) only once.
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def paper_metrics(y_true, proba, *, y_pred=None):
    """All of the paper's figures on one set of tiles, as a flat dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, as codes (0, 1, 2) or class names.
    proba : array-like of shape (n_samples, 3)
        Class probabilities (or any scores, higher meaning more likely), columns in code
        order: Non-Tumor, Non-Viable-Tumor, Viable-Tumor.
    y_pred : array-like of shape (n_samples,), default=None
        Predicted labels for accuracy and F1; by default the argmax of ``proba``.

    Returns
    -------
    dict of str to float
        ``accuracy``, ``f1_macro``, ``f1_weighted``, ``roc_auc_ovr`` and, for each class
        slug (``non_tumor``, ``non_viable_tumor``, ``viable_tumor``), the keys
        ``sen_at_spe90_<slug>``, ``spe_at_sen90_<slug>``, ``f1_<slug>`` and ``auc_<slug>``.
        Figures undefined on these labels are NaN (see the module's docstring) and one
        :class:`UndefinedMetricWarning` lists them. ``f1_macro`` is the mean of the
        defined per-class F1 scores; ``roc_auc_ovr`` is the unweighted mean of the three
        one-vs-rest AUCs.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.evaluation.metrics import paper_metrics
    >>> y = [0, 0, 1, 1, 2, 2]
    >>> proba = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1],
    ...                   [.3, .3, .4], [.1, .2, .7], [.1, .1, .8]])
    >>> m = paper_metrics(y, proba)
    >>> round(m["accuracy"], 3), m["auc_non_tumor"], m["f1_non_viable_tumor"]
    (0.833, 1.0, 0.6666666666666666)
    """
    result, message = _evaluate(y_true, proba, y_pred)
    if message is not None:
        _warn(message)
    return result


def per_class_table(y_true, proba, *, y_pred=None):
    """The per-class figures as a table, one row per class.

    Parameters
    ----------
    y_true, proba, y_pred
        As in :func:`paper_metrics`.

    Returns
    -------
    pandas.DataFrame
        Index: the class names (named ``"class"``); columns ``Sen@Spe90``, ``Spe@Sen90``,
        ``F1``, ``AUC``. Undefined figures are NaN, with one :class:`UndefinedMetricWarning`.

    Examples
    --------
    >>> from hiercls.evaluation.metrics import per_class_table
    >>> table = per_class_table([0, 1, 2, 2], [[.7, .2, .1], [.2, .6, .2], [.1, .3, .6], [.3, .3, .4]])
    >>> list(table.columns), float(table.loc["Viable-Tumor", "F1"])
    (['Sen@Spe90', 'Spe@Sen90', 'F1', 'AUC'], 1.0)
    """
    result, message = _evaluate(y_true, proba, y_pred)
    if message is not None:
        _warn(message)
    rows = [[result[_metric_key(stem, code)] for stem in _PER_CLASS_KEYS]
            for code in range(len(CLASS_NAMES))]
    return pd.DataFrame(rows, index=pd.Index(list(CLASS_NAMES), name="class"),
                        columns=list(TABLE_COLUMNS))


class _PaperFigure:
    """Score function for one key of :func:`paper_metrics`, for ``make_scorer``.

    It warns only when its own figure is undefined (for ``f1_macro``: when it averages
    fewer than three classes), with the same message :func:`paper_metrics` would give.
    A named class rather than a closure so that scorers pickle (``n_jobs`` > 1).
    """

    def __init__(self, key):
        self.key = key
        # scikit-learn's scorer repr reads the score function's __name__.
        self.__name__ = f"paper_metrics[{key!r}]"

    def __repr__(self):
        return self.__name__

    def __call__(self, y_true, proba):
        result, message = _evaluate(y_true, proba)
        value = result[self.key]
        if message is not None and (np.isnan(value) or self.key == "f1_macro"
                                    and any(np.isnan(result[_metric_key("f1", c)])
                                            for c in range(len(CLASS_NAMES)))):
            _warn(message)
        return value


def paper_scorers():
    """Scikit-learn scorers for every key of :func:`paper_metrics`.

    For ``scoring=`` of :func:`~sklearn.model_selection.cross_validate` or
    :class:`~sklearn.model_selection.GridSearchCV`. Every scorer reads ``predict_proba``
    (predictions are its argmax), so scikit-learn calls ``predict_proba`` once per fold
    for all of them. The estimator must give three probability columns in code order,
    which holds for :class:`~hiercls.HierarchicalFusionClassifier` and for a scikit-learn
    classifier fitted on all three classes, with integer or class-name labels (both sort
    into code order). A fold where a figure is undefined scores NaN (no exception); a
    ``refit`` on such a figure is the caller's choice.

    Returns
    -------
    dict of str to callable
        Keys as in :func:`paper_metrics`; all scorers are "greater is better".

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_validate
    >>> from hiercls.evaluation.metrics import paper_scorers
    >>> X, y = make_classification(n_samples=90, n_classes=3, n_informative=4, random_state=0)
    >>> cv = cross_validate(LogisticRegression(), X, y, cv=3, scoring=paper_scorers())
    >>> sorted(cv)[:3]
    ['fit_time', 'score_time', 'test_accuracy']
    """
    keys = list(_OVERALL_KEYS) + [_metric_key(stem, code) for code in range(len(CLASS_NAMES))
                                  for stem in _PER_CLASS_KEYS]
    return {key: make_scorer(_PaperFigure(key), response_method="predict_proba")
            for key in keys}
