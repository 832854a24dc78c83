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
from sklearn.metrics import make_scorer, roc_curve

from ..data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ..exceptions import UndefinedMetricWarning  # noqa: F401  (its home before)
from .roc import (
    ROC_TOLERANCE,
    operating_point,
    roc_auc_from_points,
    roc_points,
    sensitivity_at_specificity,
    sensitivity_from_points,
    specificity_at_sensitivity,
    specificity_from_points,
)

__all__ = [
    "ROC_TOLERANCE",
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

def _metric_key(stem, code):
    return f"{stem}_{_SLUGS[code]}"


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
            fpr, tpr, _ = roc_curve(y, p[:, code], drop_intermediate=False)  # as roc_points
            sen = sensitivity_from_points(fpr, tpr, 0.9)
            spe = specificity_from_points(fpr, tpr, 0.9)
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
