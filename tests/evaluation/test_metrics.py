import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import UndefinedMetricWarning as SklearnUndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    StratifiedKFold,
    cross_validate,
)

from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.metrics import (
    UndefinedMetricWarning,
    paper_metrics,
    paper_scorers,
    per_class_table,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)

SLUGS = ("non_tumor", "non_viable_tumor", "viable_tumor")
EXPECTED_KEYS = {"accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr"} | {
    f"{stem}_{slug}" for slug in SLUGS for stem in ("sen_at_spe90", "spe_at_sen90", "f1", "auc")
}


def random_fold(n=60, seed=0, classes=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    y = np.resize(np.array(classes), n)
    rng.shuffle(y)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5  # informative but imperfect
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def undefined_warnings(record):
    return [w for w in record if issubclass(w.category, UndefinedMetricWarning)]


# --- Sen@Spe90 and Spe@Sen90 by hand ------------------------------------------------

# 10 negatives, 5 positives. Thresholds from the top: 0.95 (TP 1, FP 0), 0.9 (TP 1, FP 1),
# 0.8 (TP 2, FP 1), 0.7 (TP 3, FP 1), 0.6 (TP 4, FP 1), 0.5 (TP 4, FP 2), 0.3 (TP 5, FP 2).
HAND_Y = [0] * 10 + [1] * 5
HAND_SCORE = [0.05] * 8 + [0.5, 0.9] + [0.95, 0.8, 0.7, 0.6, 0.3]


@pytest.mark.parametrize("specificity, expected", [
    (0.9, 4 / 5),    # FPR 1/10 exactly is allowed (no float slip at 1 - 0.9)
    (0.95, 1 / 5),   # only FPR 0: threshold 0.95
    (0.8, 5 / 5),    # FPR 2/10: threshold 0.3
    (1.0, 1 / 5),
    (0.0, 1.0),
])
def test_sensitivity_at_specificity_by_hand(specificity, expected):
    assert sensitivity_at_specificity(HAND_Y, HAND_SCORE, specificity) == pytest.approx(expected)


@pytest.mark.parametrize("sensitivity, expected", [
    (0.9, 8 / 10),   # TPR >= 0.9 needs all 5 positives: threshold 0.3, FP 2
    (0.6, 9 / 10),   # TPR 3/5 at threshold 0.7, FP 1
    (0.2, 10 / 10),  # TPR 1/5 at threshold 0.95, FP 0
    (1.0, 8 / 10),
    (0.0, 1.0),
])
def test_specificity_at_sensitivity_by_hand(sensitivity, expected):
    assert specificity_at_sensitivity(HAND_Y, HAND_SCORE, sensitivity) == pytest.approx(expected)


def test_ties_are_not_interpolated():
    y = [0] * 10 + [1] * 5
    score = [0.5] * 10 + [0.5] * 3 + [0.9] * 2
    # ROC points: (0, 0), (0, 2/5), (1, 1); nothing in between.
    assert sensitivity_at_specificity(y, score) == pytest.approx(0.4)
    assert specificity_at_sensitivity(y, score) == pytest.approx(0.0)


def test_perfect_separation_and_bool_input():
    y = np.array([False] * 6 + [True] * 4)
    score = np.r_[np.linspace(0, 0.4, 6), np.linspace(0.6, 1, 4)]
    assert sensitivity_at_specificity(y, score) == 1.0
    assert specificity_at_sensitivity(y, score) == 1.0


@pytest.mark.parametrize("decimals", [None, 1])
def test_agrees_with_a_brute_force_over_sklearn_roc_curve(decimals):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=200)
    score = rng.normal(size=200) + y
    if decimals is not None:
        score = np.round(score, decimals)  # many ties
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    assert sensitivity_at_specificity(y, score) == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max())
    assert specificity_at_sensitivity(y, score) == pytest.approx(
        1 - fpr[tpr >= 0.9 - 1e-12].min())
    proba = np.c_[1 - y * 0.0, np.zeros(200), np.zeros(200)]
    proba[:, 2] = score
    m = paper_metrics(np.where(y == 1, 2, rng.integers(0, 2, size=200)), proba)
    assert m["auc_viable_tumor"] == pytest.approx(roc_auc_score(y, score))


def test_binary_undefined_gives_nan_and_one_warning():
    with pytest.warns(UndefinedMetricWarning, match="no negatives") as record:
        assert np.isnan(sensitivity_at_specificity([1, 1, 1], [0.2, 0.4, 0.9]))
    assert len(undefined_warnings(record)) == 1
    with pytest.warns(UndefinedMetricWarning, match="no positives"):
        assert np.isnan(specificity_at_sensitivity([0, 0], [0.2, 0.4]))


@pytest.mark.parametrize("kwargs, match", [
    ({"y_binary": [0, 2, 1], "score": [0.1, 0.2, 0.3]}, "0/1"),
    ({"y_binary": ["a", "b"], "score": [0.1, 0.2]}, "0/1"),
    ({"y_binary": [0, 1, 1], "score": [0.1, 0.2]}, "shape"),
    ({"y_binary": [0, 1], "score": [0.1, np.nan]}, "NaN"),
    ({"y_binary": [0, 1], "score": [0.1, 0.2], "specificity": 1.5}, "specificity"),
])
def test_binary_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sensitivity_at_specificity(**kwargs)


# --- paper_metrics ----------------------------------------------------------------------

def test_paper_metrics_match_sklearn_where_defined():
    y, proba = random_fold()
    pred = proba.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all figures defined: no warning at all
        m = paper_metrics(y, proba)
    assert set(m) == EXPECTED_KEYS
    assert all(isinstance(v, float) for v in m.values())
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    per_class_f1 = f1_score(y, pred, average=None, labels=[0, 1, 2])
    for code, slug in enumerate(SLUGS):
        assert m[f"f1_{slug}"] == pytest.approx(per_class_f1[code])
        assert m[f"auc_{slug}"] == pytest.approx(roc_auc_score(y == code, proba[:, code]))
        assert m[f"sen_at_spe90_{slug}"] == pytest.approx(
            sensitivity_at_specificity(y == code, proba[:, code]))
        assert m[f"spe_at_sen90_{slug}"] == pytest.approx(
            specificity_at_sensitivity(y == code, proba[:, code]))


def test_string_and_int_labels_give_the_same_numbers():
    y, proba = random_fold(seed=3)
    names = np.array(CLASS_NAMES, dtype=object)[y]
    as_ints = paper_metrics(y, proba)
    assert paper_metrics(list(names), proba) == as_ints
    assert paper_metrics(pd.Series(names, dtype="str"), pd.DataFrame(proba)) == as_ints
    assert paper_metrics(y, proba, y_pred=np.array(CLASS_NAMES)[proba.argmax(axis=1)]) == as_ints


def test_explicit_y_pred_is_used_for_accuracy_and_f1():
    y, proba = random_fold(seed=4)
    y_pred = np.zeros_like(y)
    m = paper_metrics(y, proba, y_pred=y_pred)
    assert m["accuracy"] == pytest.approx(np.mean(y == 0))
    assert m["auc_viable_tumor"] == pytest.approx(roc_auc_score(y == 2, proba[:, 2]))


def test_fold_lacking_a_class_gives_nan_and_exactly_one_warning():
    y, proba = random_fold(seed=1, classes=(0, 2))  # no Non-Viable-Tumor tile
    proba[0] = [0.1, 0.8, 0.1]                      # ... but one predicted as such
    with pytest.warns(UndefinedMetricWarning) as record:
        m = paper_metrics(y, proba)
    caught = undefined_warnings(record)
    assert len(caught) == 1
    assert issubclass(caught[0].category, SklearnUndefinedMetricWarning)
    message = str(caught[0].message)
    assert "auc_non_viable_tumor" in message and "no positives" in message
    assert "roc_auc_ovr" in message
    for key in ("auc_non_viable_tumor", "sen_at_spe90_non_viable_tumor",
                "spe_at_sen90_non_viable_tumor", "roc_auc_ovr"):
        assert np.isnan(m[key]), key
    # Predicted but absent: F1 is defined and 0.
    assert m["f1_non_viable_tumor"] == 0.0
    for slug, code in (("non_tumor", 0), ("viable_tumor", 2)):
        assert m[f"auc_{slug}"] == pytest.approx(roc_auc_score(y == code, proba[:, code]))
    assert m["accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == y))


def test_class_absent_from_truth_and_predictions():
    y, proba = random_fold(seed=2, classes=(0, 2))
    proba[:, 1] = 0.0                               # never predicted
    pred = proba.argmax(axis=1)
    with pytest.warns(UndefinedMetricWarning, match="f1_non_viable_tumor") as record:
        m = paper_metrics(y, proba)
    assert len(undefined_warnings(record)) == 1
    assert np.isnan(m["f1_non_viable_tumor"])
    # Macro F1 averages the two defined per-class F1s.
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=[0, 2], average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))


def test_single_class_fold_does_not_raise():
    y = np.zeros(12, dtype=int)                    # e.g. patient P9: all Non-Tumor
    proba = np.tile([0.6, 0.1, 0.3], (12, 1))
    proba[:3] = [0.2, 0.1, 0.7]
    with pytest.warns(UndefinedMetricWarning) as record:
        m = paper_metrics(y, proba)
    assert len(undefined_warnings(record)) == 1
    assert "no negatives" in str(record[0].message)
    assert m["accuracy"] == pytest.approx(0.75)
    for slug in SLUGS:
        assert np.isnan(m[f"auc_{slug}"]) and np.isnan(m[f"sen_at_spe90_{slug}"])
    assert np.isnan(m["roc_auc_ovr"])
    assert m["f1_viable_tumor"] == 0.0 and np.isnan(m["f1_non_viable_tumor"])


def test_per_class_table():
    y, proba = random_fold(seed=5, classes=(0, 1))
    with pytest.warns(UndefinedMetricWarning) as record:
        table = per_class_table(y, proba)
    assert len(undefined_warnings(record)) == 1
    assert list(table.index) == list(CLASS_NAMES)
    assert list(table.columns) == ["Sen@Spe90", "Spe@Sen90", "F1", "AUC"]
    with pytest.warns(UndefinedMetricWarning):
        m = paper_metrics(y, proba)
    for code, slug in enumerate(SLUGS):
        row = table.iloc[code]
        expected = [m[f"sen_at_spe90_{slug}"], m[f"spe_at_sen90_{slug}"], m[f"f1_{slug}"],
                    m[f"auc_{slug}"]]
        np.testing.assert_array_equal(row.to_numpy(dtype=float), np.array(expected))
    assert table.loc["Viable-Tumor"].isna().to_dict() == {
        "Sen@Spe90": True, "Spe@Sen90": True, "F1": False, "AUC": True}


@pytest.mark.parametrize("y, proba, match", [
    ([0, 1], np.ones((2, 2)) / 2, r"shape \(n_samples, 3\)"),
    ([0, 1, 2], np.ones((2, 3)) / 3, "rows"),
    ([0, 1, 5], np.ones((3, 3)) / 3, "y_true contains label 5"),
    (["Non-Tumor", "Viable"], np.ones((2, 3)) / 3, "y_true contains label 'Viable'"),
    ([0, 1], [[0.5, np.nan, 0.5], [0.2, 0.3, 0.5]], "NaN"),
])
def test_paper_metrics_bad_input(y, proba, match):
    with pytest.raises(ValueError, match=match):
        paper_metrics(y, proba)


# --- scorers ----------------------------------------------------------------------------

class CountingLogisticRegression(LogisticRegression):
    """Counts predict_proba calls (class attribute: survives clone)."""

    calls: ClassVar[list] = []

    def predict_proba(self, X):
        CountingLogisticRegression.calls.append(len(X))
        return super().predict_proba(X)


def three_class_data(n=150, seed=0):
    X, y = make_classification(n_samples=n, n_features=6, n_informative=4, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, class_sep=1.0,
                               random_state=seed)
    return X, y


def test_scorer_names_follow_paper_metrics():
    assert set(paper_scorers()) == EXPECTED_KEYS


@pytest.mark.parametrize("labels", ["int", "str"])
def test_scorers_in_cross_validate_match_paper_metrics(labels):
    X, y = three_class_data()
    target = y if labels == "int" else np.array(CLASS_NAMES, dtype=object)[y]
    CountingLogisticRegression.calls.clear()
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        result = cross_validate(CountingLogisticRegression(max_iter=1000), X, target, cv=cv,
                                scoring=paper_scorers(), return_estimator=True,
                                return_indices=True)
    # One predict_proba per fold, shared by all scorers.
    assert len(CountingLogisticRegression.calls) == 3
    for fold, (estimator, test) in enumerate(zip(result["estimator"],
                                                 result["indices"]["test"])):
        expected = paper_metrics(target[test], estimator.predict_proba(X[test]))
        for key, value in expected.items():
            assert result[f"test_{key}"][fold] == pytest.approx(value), key
    assert 0.5 < result["test_accuracy"].mean() <= 1.0


def test_string_and_int_labels_score_the_same():
    X, y = three_class_data(seed=1)
    names = np.array(CLASS_NAMES, dtype=object)[y]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    a = cross_validate(LogisticRegression(max_iter=1000), X, y, cv=cv, scoring=paper_scorers())
    b = cross_validate(LogisticRegression(max_iter=1000), X, names, cv=cv,
                       scoring=paper_scorers())
    for key in EXPECTED_KEYS:
        np.testing.assert_allclose(a[f"test_{key}"], b[f"test_{key}"])


def test_scorers_with_a_group_lacking_a_class():
    X, y = three_class_data(n=180, seed=2)
    # Four "patients"; patient 3 has no Non-Viable-Tumor tile.
    groups = np.arange(len(y)) % 4
    keep = ~((groups == 3) & (y == 1))
    X, y, groups = X[keep], y[keep], groups[keep]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = cross_validate(LogisticRegression(max_iter=1000), X, y, groups=groups,
                                cv=GroupKFold(4), scoring=paper_scorers(),
                                return_indices=True)
    tests = result["indices"]["test"]
    lacking = [fold for fold, test in enumerate(tests) if not np.any(y[test] == 1)]
    assert len(lacking) == 1
    fold = lacking[0]
    for key in ("auc_non_viable_tumor", "sen_at_spe90_non_viable_tumor",
                "spe_at_sen90_non_viable_tumor", "roc_auc_ovr"):
        assert np.isnan(result[f"test_{key}"][fold]), key
        assert np.isfinite(np.delete(result[f"test_{key}"], fold)).all(), key
    for key in ("accuracy", "f1_weighted", "auc_non_tumor", "sen_at_spe90_viable_tumor"):
        assert np.isfinite(result[f"test_{key}"]).all(), key
    caught = undefined_warnings(record)
    assert caught, "expected an UndefinedMetricWarning for the fold lacking a class"
    # Every scorer of that fold words it the same, so Python shows it once.
    assert len({str(w.message) for w in caught}) == 1
    assert not [w for w in record if "Scoring failed" in str(w.message)]


def test_scorers_in_grid_search():
    X, y = three_class_data(seed=3)
    names = np.array(CLASS_NAMES, dtype=object)[y]
    search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": [0.1, 1.0]},
                          scoring=paper_scorers(), refit="f1_macro", cv=3)
    search.fit(X, names)
    assert "mean_test_sen_at_spe90_viable_tumor" in search.cv_results_
    # The refit criterion chose the candidate with the best mean macro F1, and refit it.
    best = int(np.argmax(search.cv_results_["mean_test_f1_macro"]))
    assert search.best_params_ == search.cv_results_["params"][best]
    assert search.best_estimator_.C == search.best_params_["C"]
    assert paper_scorers()["roc_auc_ovr"](search, X, names) > 0.5


def test_scorer_on_two_class_estimator_says_why():
    X, y = three_class_data()
    keep = y != 1
    model = LogisticRegression(max_iter=1000).fit(X[keep], y[keep])
    with pytest.raises(ValueError, match="shape"):
        paper_scorers()["accuracy"](model, X, y)


# --- the public ROC ---------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 1])
def test_roc_points_are_roc_curves_without_dropped_points(decimals):
    from hiercls.evaluation.metrics import operating_point, roc_auc_from_points, roc_points

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, size=80)
    score = rng.normal(size=80) + y
    if decimals is not None:
        score = np.round(score, decimals)
    fpr, tpr, thresholds = roc_points(y, score)
    expected = roc_curve(y, score, drop_intermediate=False)
    for got, want in zip((fpr, tpr, thresholds), expected):
        np.testing.assert_allclose(got, want)
    assert roc_auc_from_points(fpr, tpr) == pytest.approx(roc_auc_score(y, score))
    assert operating_point(fpr, tpr, 0.9)[1] == sensitivity_at_specificity(y, score)


def test_roc_points_of_one_class_is_an_error():
    from hiercls.evaluation.metrics import roc_points

    with pytest.raises(ValueError, match="no negatives"):
        roc_points([1, 1], [0.2, 0.3])


# What the hand-written ROC (commit 93142d4) gave on this fold, with and without ties; the
# ROC on scikit-learn's roc_curve and auc must give the same figures.
_HAND_WRITTEN_FIGURES = {
    None: {"roc_auc_ovr": 0.8994029300326968, "sen_at_spe90_non_tumor": 0.7175572519083969,
           "spe_at_sen90_non_tumor": 0.6691449814126393,
           "auc_non_viable_tumor": 0.8923574029957008,
           "sen_at_spe90_non_viable_tumor": 0.6382978723404256,
           "spe_at_sen90_viable_tumor": 0.7463235294117647,
           "auc_viable_tumor": 0.9111040900735294},
    1: {"roc_auc_ovr": 0.8840232489286904, "sen_at_spe90_non_tumor": 0.7175572519083969,
        "spe_at_sen90_non_tumor": 0.6245353159851301, "auc_non_viable_tumor": 0.8779950162928887,
        "sen_at_spe90_non_viable_tumor": 0.6312056737588653,
        "spe_at_sen90_viable_tumor": 0.7426470588235294, "auc_viable_tumor": 0.893899356617647},
}


@pytest.mark.parametrize("decimals", [None, 1])
def test_figures_on_scikit_learn_roc_are_the_hand_written_ones(decimals):
    from scipy.special import softmax

    from hiercls.evaluation.metrics import roc_auc_from_points, roc_points

    rng = np.random.default_rng(19)
    logits = rng.normal(scale=2.0, size=(400, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(logits, axis=1)])
    proba = softmax(logits * 2.0, axis=1)
    if decimals is not None:
        proba = np.round(proba, decimals)
    figures = paper_metrics(y, proba)
    for key, value in _HAND_WRITTEN_FIGURES[decimals].items():
        assert figures[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    if decimals == 1:
        # 12 distinct thresholds and the same curve point by point (sums as a fingerprint).
        fpr, tpr, thresholds = roc_points(y == 2, proba[:, 2])
        assert fpr.size == 12 and thresholds[0] == np.inf
        assert (fpr.sum(), tpr.sum()) == pytest.approx((2.3933823529411766, 8.3984375), rel=1e-12)
        assert roc_auc_from_points(fpr, tpr) == pytest.approx(0.893899356617647, rel=1e-12)
