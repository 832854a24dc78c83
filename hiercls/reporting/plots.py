"""Figures of an evaluation: confusion, ROC, calibration, gates, training and necrosis.

Every function builds and returns a :class:`matplotlib.figure.Figure` without touching
pyplot's global state (no ``plt.figure``, never ``plt.show``), so it works headless, in
tests and in threads, and a figure is freed as soon as it is no longer referenced. Save
one with ``fig.savefig("name.png")``; in a notebook, display it by evaluating it.

A figure whose content is undefined on the data (a class without tiles has no ROC curve;
a model without gates has no gate weights) is still returned, with a note on the axes
saying what is missing, so a report always has the same figures.
"""

import numbers

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix
from sklearn.utils import check_scalar

from ..data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ..evaluation.metrics import operating_point, roc_auc_from_points, roc_points
from ..evaluation.necrosis import GOOD_RESPONSE
from ..validation import check_number

__all__ = [
    "CLASS_COLORS",
    "plot_calibration",
    "plot_confusion_matrix",
    "plot_gate_weights",
    "plot_necrosis",
    "plot_roc_curves",
    "plot_training_curves",
]

#: One colour per class, in code order (Non-Tumor, Non-Viable-Tumor, Viable-Tumor).
CLASS_COLORS = ("#4878a8", "#d08c2c", "#b8405e")

_FOLD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _note(ax, text):
    """Say on empty axes why they are empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            fontsize=9, color="0.35", wrap=True)


def _check_proba(proba, n_samples):
    p = check_probabilities(proba)
    if p.shape[0] != n_samples:
        raise ValueError(f"proba has {p.shape[0]} rows but y_true has {n_samples} labels; "
                         "expected one row per label")
    return p


def _short(name):
    """Class names short enough for tick labels."""
    return name.replace("Non-Viable-Tumor", "Non-Viable\nTumor").replace("Viable-Tumor", "Viable\nTumor")


# --------------------------------------------------------------------------------------
# Confusion matrix

def plot_confusion_matrix(y_true, proba, *, y_pred=None):
    """Confusion matrix as counts and normalized by true class (rows sum to 1).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, codes (0, 1, 2) or class names.
    proba : array-like of shape (n_samples, 3)
        Class probabilities in code order; predictions are their argmax unless ``y_pred``
        is given.
    y_pred : array-like of shape (n_samples,), default=None
        Predicted labels.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels; a class without true tiles has an empty row marked "no tiles".
    """
    codes, _ = encode_labels(y_true, name="y_true")
    p = _check_proba(proba, codes.size)
    pred = p.argmax(axis=1) if y_pred is None else encode_labels(y_pred, name="y_pred")[0]
    counts = confusion_matrix(codes, pred, labels=list(range(len(CLASS_NAMES))))
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.full(counts.shape, np.nan), where=totals > 0)

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = ((counts, "Counts", "{:d}"), (normalized, "Normalized by true class", "{:.2f}"))
    for ax, (matrix, title, fmt) in zip(axes, panels):
        scale = matrix / max(np.nanmax(matrix), 1e-12) if title == "Counts" else matrix
        ax.imshow(np.nan_to_num(scale, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(len(CLASS_NAMES)):
            for j in range(len(CLASS_NAMES)):
                if totals[i, 0] == 0:
                    text, dark = ("no tiles" if j == 1 else ""), False
                else:
                    text, dark = fmt.format(matrix[i, j]), scale[i, j] > 0.55
                ax.text(j, i, text, ha="center", va="center", fontsize=10,
                        color="white" if dark else "black")
        ticks = range(len(CLASS_NAMES))
        ax.set_xticks(ticks, [_short(n) for n in CLASS_NAMES])
        ax.set_yticks(ticks, [_short(n) for n in CLASS_NAMES])
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.set_title(title)
    fig.suptitle(f"Confusion matrix ({codes.size} tiles)")
    return fig


# --------------------------------------------------------------------------------------
# ROC curves

def plot_roc_curves(y_true, proba, *, specificity=0.9):
    """One-vs-rest ROC curve of each class, with its Sen@Spe point marked.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, codes or class names.
    proba : array-like of shape (n_samples, 3)
        Class probabilities in code order.
    specificity : float, default=0.9
        The specificity of the marked operating point (Sen@Spe90 by default), as
        :func:`hiercls.evaluation.metrics.sensitivity_at_specificity` defines it.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per class; a class with no tiles (or only tiles) of its own has no curve
        and a note instead. The curve, its AUC and the marked point are those of
        :func:`hiercls.evaluation.metrics.roc_points`, so they match the paper's metrics.
    """
    codes, _ = encode_labels(y_true, name="y_true")
    p = _check_proba(proba, codes.size)
    specificity = check_number(specificity, "specificity", low=0.0, high=1.0)
    label = f"Sen@Spe{100 * specificity:g}"

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, len(CLASS_NAMES), sharey=True)
    for code, (ax, name) in enumerate(zip(axes, CLASS_NAMES)):
        y = (codes == code).astype(np.int64)
        ax.plot([0, 1], [0, 1], color="0.75", lw=1, ls=":")
        ax.axvline(1.0 - specificity, color="0.6", lw=0.8, ls="--")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.04)
        ax.set_aspect("equal")
        ax.set_xlabel("1 - specificity (FPR)")
        ax.set_title(name)
        if y.sum() in (0, y.size):
            reason = "no tiles of the class" if y.sum() == 0 else "no tiles of other classes"
            _note(ax, f"ROC undefined:\n{reason}")
            continue
        fpr, tpr, _ = roc_points(y, p[:, code])
        auc = roc_auc_from_points(fpr, tpr)
        ax.plot(fpr, tpr, color=CLASS_COLORS[code], lw=2, label=f"AUC {auc:.3f}")
        x_op, sen = operating_point(fpr, tpr, specificity)
        ax.plot([x_op], [sen], "o", ms=8, mfc="white", mec="black", mew=1.5,
                label=f"{label} = {sen:.2f}")
        ax.legend(loc="lower right", fontsize=9)
    axes[0].set_ylabel("Sensitivity (TPR)")
    fig.suptitle(f"One-vs-rest ROC curves ({codes.size} tiles)")
    return fig


# --------------------------------------------------------------------------------------
# Calibration

def plot_calibration(y_true, proba, *, n_bins=10):
    """Reliability curves: observed frequency of each class against its predicted probability.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, codes or class names.
    proba : array-like of shape (n_samples, 3)
        Class probabilities in code order.
    n_bins : int, default=10
        Equal-width probability bins over [0, 1]; empty bins are skipped. The points are
        :func:`sklearn.calibration.calibration_curve` (``strategy="uniform"``): a bin holds
        the probabilities above its lower edge up to and including its upper edge.

    Returns
    -------
    matplotlib.figure.Figure
        Top: one curve per class (a perfectly calibrated model lies on the diagonal);
        bottom: how many tiles fall in each bin. A class without true tiles still has a
        curve (every observed frequency is 0) and is marked "absent" in the legend.
    """
    codes, _ = encode_labels(y_true, name="y_true")
    p = _check_proba(proba, codes.size)
    check_scalar(n_bins, "n_bins", numbers.Integral, min_val=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = 1.0 / n_bins

    fig = Figure(figsize=(6.2, 6.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.2))
    top.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    for code, name in enumerate(CLASS_NAMES):
        score = p[:, code]
        y = (codes == code).astype(np.int64)
        # pos_label=1 so that a class absent from y_true (y all 0) still has its curve.
        observed, mean_score = calibration_curve(y, score, n_bins=n_bins, strategy="uniform",
                                                 pos_label=1)
        # The tiles per bin, binned as calibration_curve bins them: bin i holds scores in
        # (edges[i], edges[i+1]], the first bin includes 0.
        count = np.bincount(np.searchsorted(edges[1:-1], score), minlength=n_bins)
        legend = name if y.any() else f"{name} (absent from y_true)"
        # Drawn with Axes.plot rather than CalibrationDisplay, which imports pyplot and
        # relabels the axes at each curve.
        top.plot(mean_score, observed, "o-", color=CLASS_COLORS[code], ms=4, label=legend)
        offset = (code - 1) * width / 3.2
        bottom.bar(edges[:-1] + width / 2 + offset, count, width=width / 3.4,
                   color=CLASS_COLORS[code], alpha=0.85)
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("Observed frequency")
    top.set_title(f"Calibration ({codes.size} tiles, {n_bins} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("Predicted probability")
    bottom.set_ylabel("Tiles")
    return fig


# --------------------------------------------------------------------------------------
# Gate weights

def plot_gate_weights(y_true, gate_image):
    """Distribution of the image share of the gate, ``a_img``, per true class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, codes or class names.
    gate_image : array-like of shape (n_samples,) or None
        Each tile's image gate weight (the radiomics weight is ``1 - a_img``), e.g. the
        ``gate_image`` column of an evaluation's predictions. None (a model without gates)
        gives a figure with a note.

    Returns
    -------
    matplotlib.figure.Figure
        A box per class with the tiles drawn over it; a class without tiles is marked.
    """
    codes, _ = encode_labels(y_true, name="y_true")
    fig = Figure(figsize=(6.2, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Gate: image share of the fused embedding, per true class")
    ax.set_ylabel("a_img (image gate weight)")
    ticks = range(1, len(CLASS_NAMES) + 1)
    gates = None if gate_image is None else np.asarray(gate_image, dtype=float)
    if gates is not None and gates.shape != codes.shape:
        raise ValueError(f"gate_image must have one value per label, shape {codes.shape}; "
                         f"got shape {gates.shape}")
    tick_labels = [f"{_short(name)}\n(n={int(np.sum(codes == code))})"
                   for code, name in enumerate(CLASS_NAMES)]
    ax.set_xticks(ticks, tick_labels)
    ax.set_xlim(0.4, len(CLASS_NAMES) + 0.6)
    ax.set_ylim(-0.02, 1.02)
    if gates is None or not np.isfinite(gates).any():
        _note(ax, "no gate weights\n(the model has no gate, or one modality only)")
        return fig
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for code in range(len(CLASS_NAMES)):
        values = gates[(codes == code) & np.isfinite(gates)]
        if values.size == 0:
            ax.text(code + 1, 0.5, "no tiles", ha="center", va="center", color="0.35")
            continue
        box = ax.boxplot([values], positions=[code + 1], widths=0.5, showfliers=False,
                         patch_artist=True, manage_ticks=False)
        box["boxes"][0].set(facecolor=CLASS_COLORS[code], alpha=0.35)
        box["medians"][0].set(color="black")
        jitter = rng.uniform(-0.16, 0.16, values.size)
        ax.plot(code + 1 + jitter, values, ".", color=CLASS_COLORS[code], ms=3, alpha=0.6)
    return fig


# --------------------------------------------------------------------------------------
# Training curves

def _series(history, key):
    """(epochs, values) of ``key`` in one fold's history (list of per-epoch dicts)."""
    epochs, values = [], []
    for number, row in enumerate(history, start=1):
        value = row.get(key) if isinstance(row, dict) else None
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        epochs.append(row.get("epoch", number))
        values.append(value)
    return epochs, values


def plot_training_curves(histories):
    """Train/valid losses and the learned task weights over epochs, one line per fold.

    Parameters
    ----------
    histories : list of (list of dict or None)
        Each fold's per-epoch history, as :class:`~hiercls.evaluation.cross_validation.EvaluationResult`
        keeps it (keys ``epoch``, ``train_loss``, ``valid_loss``, ``task_weight_tumor``,
        ``task_weight_viable``); None for a fold without one.

    Returns
    -------
    matplotlib.figure.Figure
        Left: losses (solid train, dashed valid); right: task weights ``exp(-lA)`` of the
        tumor head (solid) and ``exp(-lB)`` of the viable head (dashed). A panel without
        any such record has a note.
    """
    histories = list(histories or [])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, weight_ax = fig.subplots(1, 2)
    panels = ((loss_ax, ("train_loss", "valid_loss"), "Loss", "no losses recorded"),
              (weight_ax, ("task_weight_tumor", "task_weight_viable"), "Task weight",
               "no task weights recorded\n(flat loss, or no history)"))
    for ax, keys, ylabel, empty in panels:
        drawn = False
        for fold, history in enumerate(histories):
            if not history:
                continue
            color = _FOLD_COLORS[fold % len(_FOLD_COLORS)]
            for key, style in zip(keys, ("-", "--")):
                epochs, values = _series(history, key)
                if values:
                    ax.plot(epochs, values, style, color=color, marker="." if len(values) < 3 else None,
                            label=f"fold {fold}" if style == "-" else None)
                    drawn = True
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        if not drawn:
            _note(ax, empty)
            continue
        ax.xaxis.get_major_locator().set_params(integer=True)
        # Explain the two line styles once, then the fold colours.
        handles, labels = ax.get_legend_handles_labels()
        styles = [ax.plot([], [], "-", color="0.3")[0], ax.plot([], [], "--", color="0.3")[0]]
        names = ([k.replace("_", " ") for k in keys] if ylabel == "Loss"
                 else ["tumor head exp(-lA)", "viable head exp(-lB)"])
        ax.legend(styles + handles, names + labels, fontsize=8, ncol=2)
    loss_ax.set_title("Losses")
    weight_ax.set_title("Learned task weights")
    return fig


# --------------------------------------------------------------------------------------
# Necrosis

def plot_necrosis(necrosis, *, threshold=GOOD_RESPONSE):
    """Each patient's estimated necrotic fraction with its interval, against the reference.

    Parameters
    ----------
    necrosis : DataFrame
        One row per patient, as :func:`hiercls.evaluation.necrosis.necrosis_report` or
        :func:`~hiercls.evaluation.necrosis.necrosis_from_evaluation` give it: ``necrotic_fraction``
        and, where present, ``necrotic_fraction_low``/``_high`` (the interval),
        ``necrotic_fraction_argmax`` and ``reference_necrotic_fraction``.
    threshold : float, default=0.90
        The good-response line.

    Returns
    -------
    matplotlib.figure.Figure
        Necrotic fraction (%) per patient: estimate with error bar, argmax estimate
        (hollow), pathologists' reference (cross) and the threshold line. Patients without
        tumor are marked "no tumor".
    """
    if not isinstance(necrosis, pd.DataFrame) or "necrotic_fraction" not in necrosis.columns:
        raise ValueError("necrosis must be a DataFrame with a 'necrotic_fraction' column, as "
                         "hiercls.evaluation.necrosis.necrosis_report returns")
    fig = Figure(figsize=(max(6.0, 1.1 * len(necrosis) + 3.0), 4.4), layout="constrained")
    ax = fig.subplots()
    ax.set_title(f"Necrotic fraction of the tumor per {necrosis.index.name or 'patient'}")
    ax.set_ylabel("Necrosis (% of tumor)")
    if necrosis.empty:
        _note(ax, "no patients")
        return fig
    x = np.arange(len(necrosis))

    def column(name):  # in percent; NaN where the table lacks the column
        if name not in necrosis.columns:
            return np.full(len(necrosis), np.nan)
        return necrosis[name].to_numpy(dtype=float) * 100.0

    estimate = column("necrotic_fraction")
    low, high = column("necrotic_fraction_low"), column("necrotic_fraction_high")
    reference = column("reference_necrotic_fraction")

    ax.axhspan(100.0 * threshold, 101.0, color="#2ca02c", alpha=0.08)
    ax.axhline(100.0 * threshold, color="#2ca02c", lw=1, ls="--",
               label=f"good response (>= {100 * threshold:g} %)")
    has_interval = np.isfinite(low) & np.isfinite(high)
    if has_interval.any():
        ax.errorbar(x[has_interval], estimate[has_interval],
                    yerr=[estimate[has_interval] - low[has_interval],
                          high[has_interval] - estimate[has_interval]],
                    fmt="none", ecolor="black", elinewidth=1.2, capsize=5)
    # The table says how its fraction was estimated (the expected counts, or a quantifier).
    methods = sorted(set(necrosis["method"])) if "method" in necrosis.columns else ["pcc"]
    how = "expected fraction" if methods == ["pcc"] else "method " + ", ".join(methods)
    ax.plot(x, estimate, "o", color="black", ms=7, label=f"estimate ({how}, CI)")
    if np.isfinite(column("necrotic_fraction_argmax")).any():
        ax.plot(x + 0.18, column("necrotic_fraction_argmax"), "o", mfc="none", mec="0.45",
                ms=7, label="estimate (argmax count)")
    if np.isfinite(reference).any():
        ax.plot(x, reference, "X", color="#d62728", ms=9, label="pathologists' labels")
    has_reference = "reference_necrotic_fraction" in necrosis.columns
    # A missing marker is explained under the patient's name: which side found no tumor.
    names = []
    for i, name in enumerate(necrosis.index):
        if np.isnan(estimate[i]) and (np.isnan(reference[i]) or not has_reference):
            names.append(f"{name}\nno tumor")
        elif np.isnan(estimate[i]):
            names.append(f"{name}\nno tumor (model)")
        elif has_reference and np.isnan(reference[i]):
            names.append(f"{name}\nno tumor (labels)")
        else:
            names.append(str(name))
    ax.set_xticks(x, names)
    ax.set_xlabel(necrosis.index.name or "patient")
    ax.set_xlim(-0.6, len(necrosis) - 0.4)
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
