"""The figures of hiercls.reporting.plots, and that they draw what the metrics compute."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.metrics import (
    operating_point,
    paper_metrics,
    roc_auc_from_points,
    roc_points,
    sensitivity_at_specificity,
)
from hiercls.reporting import plots


@pytest.fixture
def fold():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=60)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=codes.size)
    proba[np.arange(codes.size), codes] += 0.6
    proba /= proba.sum(axis=1, keepdims=True)
    # Ties, so that the curve has steps of several tiles.
    proba = np.round(proba, 1)
    proba[:, 0] = 1.0 - proba[:, 1:].sum(axis=1)
    return codes, proba


def test_every_figure_builds(fold):
    codes, proba = fold
    figures = [
        plots.plot_confusion_matrix(codes, proba),
        plots.plot_roc_curves(codes, proba),
        plots.plot_calibration(codes, proba, n_bins=5),
        plots.plot_gate_weights(codes, np.linspace(0, 1, codes.size)),
        plots.plot_training_curves([[{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.2,
                                      "task_weight_tumor": 1.0, "task_weight_viable": 0.9}]]),
        plots.plot_necrosis(pd.DataFrame({"necrotic_fraction": [0.5]},
                                         index=pd.Index(["P1"], name="patient"))),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and fig.axes
        fig.canvas.draw()  # renders without error


def test_roc_drawn_is_the_metrics_roc(fold):
    codes, proba = fold
    fig = plots.plot_roc_curves(codes, proba, specificity=0.9)
    metrics = paper_metrics(codes, proba)
    for code, ax in enumerate(fig.axes):
        y = (codes == code).astype(int)
        fpr, tpr, _ = roc_points(y, proba[:, code])
        curve = next(line for line in ax.lines if line.get_color() == plots.CLASS_COLORS[code])
        np.testing.assert_array_equal(curve.get_xdata(), fpr)
        np.testing.assert_array_equal(curve.get_ydata(), tpr)
        slug = CLASS_NAMES[code].lower().replace("-", "_")
        auc = roc_auc_from_points(fpr, tpr)
        assert auc == metrics[f"auc_{slug}"]
        assert curve.get_label() == f"AUC {auc:.3f}"
        marker = next(line for line in ax.lines if line.get_marker() == "o")
        x_op, sen = operating_point(fpr, tpr, 0.9)
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (x_op, sen)
        assert sen == metrics[f"sen_at_spe90_{slug}"]
        assert sen == sensitivity_at_specificity(y, proba[:, code], 0.9)
        assert x_op <= 0.1 + 1e-9


def test_operating_point_counts_an_fpr_of_exactly_one_tenth():
    # 10 negatives, one scored above every positive: FPR 1/10 is specificity 0.9, although
    # 1 - 0.9 < 0.1 in floating point; the plot marks the point the metric reports.
    y = np.array([0] * 10 + [1] * 4)
    score = np.array([0.1] * 9 + [0.7] + [0.6, 0.8, 0.9, 0.95])
    proba = np.c_[1 - score, np.zeros_like(score), score]
    codes = np.where(y == 1, 2, 0)
    fig = plots.plot_roc_curves(codes, proba)
    marker = next(line for line in fig.axes[2].lines if line.get_marker() == "o")
    assert marker.get_ydata()[0] == sensitivity_at_specificity(y, score) == 1.0
    assert marker.get_xdata()[0] == pytest.approx(0.1)


@pytest.mark.parametrize("plot", [plots.plot_confusion_matrix, plots.plot_roc_curves,
                                  plots.plot_calibration])
@pytest.mark.parametrize("proba, match", [
    ([[0.2, 0.3, 0.6], [0.2, 0.3, 0.5]], "proba must have rows summing to 1"),
    ([[1.2, -0.2, 0.0], [0.2, 0.3, 0.5]], r"proba must hold probabilities in \[0, 1\]"),
    ([[0.2, np.nan, 0.8], [0.2, 0.3, 0.5]], "proba contains NaN"),
    ([[0.5, 0.5], [0.5, 0.5]], r"proba must have shape \(n_samples, 3\)"),
    ([[0.2, 0.3, 0.5]], "proba has 1 rows but y_true has 2"),
])
def test_plots_reject_what_is_not_probabilities(plot, proba, match):
    with pytest.raises(ValueError, match=match):
        plot([0, 2], proba)


@pytest.mark.parametrize("call, error, match", [
    (lambda: plots.plot_roc_curves([0, 2], [[1, 0, 0], [0, 0, 1]], specificity=1.5),
     ValueError, "specificity"),
    (lambda: plots.plot_roc_curves([0, 2], [[1, 0, 0], [0, 0, 1]], specificity=float("nan")),
     ValueError, "specificity"),
    (lambda: plots.plot_calibration([0, 2], [[1, 0, 0], [0, 0, 1]], n_bins=0),
     ValueError, "n_bins"),
    (lambda: plots.plot_calibration([0, 2], [[1, 0, 0], [0, 0, 1]], n_bins=2.5),
     TypeError, "n_bins"),
])
def test_bad_parameters_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# The hand-written bins (commit 93142d4) on 400 tiles off the bin edges: tiles per bin for
# each class, and the Non-Tumor reliability curve. The bins on scikit-learn's
# calibration_curve must draw the same.
_HAND_WRITTEN_COUNTS = [[208, 28, 16, 10, 15, 10, 11, 15, 15, 72],
                        [198, 20, 18, 10, 19, 10, 11, 18, 27, 69],
                        [206, 25, 26, 8, 7, 13, 7, 10, 17, 81]]
_HAND_WRITTEN_NON_TUMOR = (
    [0.01655987785394395, 0.1271730543749737, 0.24051885842478157, 0.34304853200005747,
     0.43571345108787424, 0.5597424893766239, 0.6753488514085357, 0.7638848487861504,
     0.8553251477968189, 0.9775589489075186],
    [0.08173076923076923, 0.21428571428571427, 0.25, 0.4, 0.4, 0.3, 0.5454545454545454,
     0.6666666666666666, 0.6, 0.9166666666666666],
)


def test_calibration_bins_are_the_hand_written_ones():
    from scipy.special import softmax
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(19)
    logits = rng.normal(scale=2.0, size=(400, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(logits, axis=1)])
    proba = softmax(logits * 2.0, axis=1)
    fig = plots.plot_calibration(y, proba, n_bins=10)
    top, bottom = fig.axes
    curves = [line for line in top.lines if line.get_label() in CLASS_NAMES]
    assert [c.get_label() for c in curves] == list(CLASS_NAMES)
    np.testing.assert_allclose(curves[0].get_xdata(), _HAND_WRITTEN_NON_TUMOR[0], rtol=1e-12)
    np.testing.assert_allclose(curves[0].get_ydata(), _HAND_WRITTEN_NON_TUMOR[1], rtol=1e-12)
    heights = [[int(bar.get_height()) for bar in bars] for bars in bottom.containers]
    assert heights == _HAND_WRITTEN_COUNTS
    for code, curve in enumerate(curves):
        observed, mean = calibration_curve(y == code, proba[:, code], n_bins=10)
        np.testing.assert_array_equal(curve.get_xdata(), mean)
        np.testing.assert_array_equal(curve.get_ydata(), observed)


def test_calibration_bin_edges_follow_scikit_learn():
    # A probability on an inner edge belongs to the bin below it (as in calibration_curve),
    # and the bars count what the curve averages.
    codes = np.array([0, 2, 2, 0])
    proba = np.array([[0.5, 0.0, 0.5], [0.5, 0.0, 0.5], [0.2, 0.0, 0.8], [0.9, 0.0, 0.1]])
    fig = plots.plot_calibration(codes, proba, n_bins=2)
    top, bottom = fig.axes
    viable = next(line for line in top.lines if line.get_label() == "Viable-Tumor")
    # Viable-Tumor: 0.1, 0.5, 0.5 in the lower bin (one viable of three), 0.8 in the upper.
    np.testing.assert_allclose(viable.get_xdata(), [1.1 / 3, 0.8])
    np.testing.assert_allclose(viable.get_ydata(), [1 / 3, 1.0])
    assert [int(bar.get_height()) for bar in bottom.containers[2]] == [3, 1]
    absent = next(line for line in top.lines if line.get_label().startswith("Non-Viable"))
    assert "absent" in absent.get_label()
    np.testing.assert_array_equal(absent.get_ydata(), [0.0])
