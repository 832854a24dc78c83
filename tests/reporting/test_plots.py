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
