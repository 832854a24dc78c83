"""One self-contained HTML report of a patient-level evaluation.

The report is a single ``report.html`` that needs nothing else to be read: every figure
is embedded as a base64 PNG, the style sheet is inline, and there is no script. Each
figure is also saved as a PNG beside it, for slides and READMEs.
"""

import base64
import html
import io
import warnings
from pathlib import Path

import numpy as np

from ..data.labels import CLASS_NAMES
from ..evaluation.cross_validation import summarize_scores
from ..evaluation.metrics import per_class_table
from ..evaluation.necrosis import GOOD_RESPONSE, necrosis_from_evaluation
from . import plots

__all__ = ["FIGURES", "evaluation_figures", "html_page", "html_table", "percent", "png_bytes",
           "write_necrosis_report", "write_report"]

#: The report's figures: (id, caption). The id names the embedded image, its PNG file
#: (``<id>.png``) and its anchor in the HTML.
FIGURES = (
    ("confusion-matrix", "Confusion matrix of the out-of-fold predictions (argmax)."),
    ("roc-curves", ("One-vs-rest ROC curve of each class; the circle is the operating point "
                    "of Sen@Spe90 (highest sensitivity at specificity >= 90 %).")),
    ("calibration", ("Reliability of the predicted probabilities: observed frequency of each "
                     "class against its predicted probability.")),
    ("gate-weights", ("Image share a_img of the learned gate per true class (radiomics share "
                      "is 1 - a_img).")),
    ("training-curves", ("Training and validation losses and the learned task weights of the "
                         "hierarchical loss over epochs, one colour per fold.")),
    ("necrosis", ("Necrotic fraction of the tumor per patient: estimate from the out-of-fold "
                  "probabilities with its bootstrap interval, against the pathologists' labels.")),
)

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.note { color: #666; font-size: .9em; } nav a { margin-right: 1em; }
"""


def png_bytes(fig, dpi):
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def html_page(title, body, *, metadata=None):
    """A whole self-contained page: the house style, ``title``, the metadata table, ``body``
    (HTML) and the line naming the hiercls version. Shared by every report."""
    from .. import __version__

    meta = "" if not metadata else html_table(None, [[k, v] for k, v in metadata.items()],
                                              name_columns=2)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{meta}
{body}
<p class="note">Written by hiercls {html.escape(__version__)}.</p>
</body></html>
"""


def _number(value, digits=3):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def percent(value):
    """A fraction as ``"45.2 %"``, or ``"n/a"``."""
    return "n/a" if not np.isfinite(value) else f"{100.0 * value:.1f} %"


def html_table(header, rows, name_columns=1):
    """An HTML table (no header row when ``header`` is None); every cell is escaped, the
    first ``name_columns`` left-aligned."""
    def cells(values, tag):
        return "".join(
            f"<{tag}{' class=name' if k < name_columns else ''}>{html.escape(str(v))}</{tag}>"
            for k, v in enumerate(values))
    head = "" if header is None else f"<thead><tr>{cells(header, 'th')}</tr></thead>"
    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _metrics_section(scores):
    if scores is None or scores.empty:
        return '<p class="note">No fold scores.</p>'
    summary = summarize_scores(scores)
    folds = [str(name) for name in scores.index]
    header = ["metric", "mean ± sd", "folds defined", *[f"fold {k}: {p}" for k, p in enumerate(folds)]]
    rows = []
    for metric, line in summary.iterrows():
        sd = "" if not np.isfinite(line["sd"]) else f" ± {line['sd']:.3f}"
        mean = "n/a" if not np.isfinite(line["mean"]) else f"{line['mean']:.3f}{sd}"
        rows.append([metric, mean, f"{int(line['n_folds'])}/{len(scores)}",
                     *[_number(float(v)) for v in scores[metric]]])
    return (html_table(header, rows) + '<p class="note">Each fold holds out whole patients; a '
            "figure undefined on a fold (its test patients lack a class) is n/a there and "
            "left out of the mean.</p>")


def _pooled_section(predictions):
    needed = [*CLASS_NAMES, "y_true"]
    if predictions is None or any(c not in predictions.columns for c in needed):
        return '<p class="note">No out-of-fold predictions.</p>'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined figures show as n/a
        table = per_class_table(predictions["y_true"], predictions[list(CLASS_NAMES)])
    rows = [[name, *[_number(float(v)) for v in line]] for name, line in table.iterrows()]
    return html_table(["class", *table.columns], rows)


def _necrosis_section(necrosis):
    if necrosis is None or necrosis.empty:
        return '<p class="note">No per-patient necrosis.</p>'
    with_reference = "reference_necrotic_fraction" in necrosis.columns
    group = necrosis.index.name or "patient"
    header = [group, "tiles", "expected tumor tiles", "necrosis (estimate)", "interval",
              "necrosis (argmax)", "response", "method"]
    if with_reference:
        header += ["tumor tiles (labels)", "necrosis (labels)", "response (labels)",
                   "absolute error"]

    def get(line, key):
        return float(line[key]) if key in line.index else float("nan")

    rows = []
    for patient, line in necrosis.iterrows():
        low, high = get(line, "necrotic_fraction_low"), get(line, "necrotic_fraction_high")
        interval = (f"{100 * low:.1f} – {100 * high:.1f} %"
                    if np.isfinite(low) and np.isfinite(high) else "n/a")
        row = [patient, int(line["n_tiles"]), _number(get(line, "expected_tumor_tiles"), 1),
               percent(get(line, "necrotic_fraction")), interval,
               percent(get(line, "necrotic_fraction_argmax")), line.get("response", ""),
               line.get("method", "pcc")]
        if with_reference:
            row += [int(line["reference_tumor_tiles"]),
                    percent(get(line, "reference_necrotic_fraction")),
                    line["reference_response"],
                    _number(100 * get(line, "absolute_error"), 1) + " pp"
                    if np.isfinite(get(line, "absolute_error")) else "n/a"]
        rows.append(row)
    return html_table(header, rows) + (
        '<p class="note">Necrosis is the non-viable share of the tumor (Non-Tumor tiles '
        "excluded). Method pcc: sum P(Non-Viable) / sum P(Non-Viable or Viable) over the "
        f"{html.escape(group)}'s tiles, interval a percentile bootstrap over its tiles (over "
        "whole slides where the slides were given); any other method (acc, pacc, emq, dmy, "
        "kdey): the tumor prevalences quantified from the posteriors with a calibration set "
        "of held-out tiles (hiercls.evaluation.quantification), interval a bootstrap over the "
        "tiles (or slides) and the calibration set. Good response: necrosis &gt;= 90 %. pp: "
        "percentage points.</p>")


def evaluation_figures(result, necrosis=None, *, threshold=GOOD_RESPONSE):
    """The report's figures of an evaluation, by id (see :data:`FIGURES`).

    Parameters
    ----------
    result : EvaluationResult
        What :func:`hiercls.evaluation.cross_validation.cross_validate_by_patient` returned.
    necrosis : DataFrame or None, default=None
        Per-patient necrosis (:func:`hiercls.evaluation.necrosis.necrosis_from_evaluation`); None
        computes it from ``result``.
    threshold : float, default=0.90
        The good-response line of the necrosis figure.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    predictions = result.predictions
    y_true = predictions["y_true"]
    proba = predictions[list(CLASS_NAMES)]
    if necrosis is None:
        necrosis = necrosis_from_evaluation(result, threshold=threshold)
    gates = predictions["gate_image"] if "gate_image" in predictions.columns else None
    return {
        "confusion-matrix": plots.plot_confusion_matrix(y_true, proba),
        "roc-curves": plots.plot_roc_curves(y_true, proba),
        "calibration": plots.plot_calibration(y_true, proba),
        "gate-weights": plots.plot_gate_weights(y_true, gates),
        "training-curves": plots.plot_training_curves(result.histories),
        "necrosis": plots.plot_necrosis(necrosis, threshold=threshold),
    }


def write_report(out_dir, result, necrosis=None, *, title="hiercls evaluation report",
                 metadata=None, threshold=GOOD_RESPONSE, dpi=110):
    """Write ``out_dir/report.html``, one self-contained file, and each figure as a PNG.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to write to; created if needed. ``report.html`` and ``<id>.png`` for each
        figure id of :data:`FIGURES` are overwritten.
    result : EvaluationResult
        What :func:`hiercls.evaluation.cross_validation.cross_validate_by_patient` returned.
    necrosis : DataFrame or None, default=None
        Per-patient necrosis with reference columns, as
        :func:`hiercls.evaluation.necrosis.necrosis_from_evaluation` gives it; None computes exactly
        that from ``result`` (default bootstrap).
    title : str, default="hiercls evaluation report"
    metadata : dict or None, default=None
        Shown as a table under the title (e.g. data set, backbone, epochs, command line).
    threshold : float, default=0.90
        The good-response line of the necrosis figure.
    dpi : int, default=110
        Resolution of the figures.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Notes
    -----
    The HTML references nothing outside itself: figures are ``data:image/png;base64``
    images (``<img id="roc-curves" ...>``, ids as in :data:`FIGURES`), the style sheet is
    inline and there is no JavaScript.
    """
    for attribute in ("scores", "predictions", "histories"):
        if not hasattr(result, attribute):
            raise TypeError("result must be an EvaluationResult (scores, predictions, histories); "
                            f"got {type(result).__name__} without {attribute!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if necrosis is None:
        necrosis = necrosis_from_evaluation(result, threshold=threshold)
    figures = evaluation_figures(result, necrosis, threshold=threshold)

    sections = []
    for name, caption in FIGURES:
        data = png_bytes(figures[name], dpi)
        (out_dir / f"{name}.png").write_bytes(data)
        encoded = base64.b64encode(data).decode("ascii")
        sections.append(
            f'<figure id="figure-{name}"><img id="{name}" alt="{name}: {html.escape(caption)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")

    predictions = result.predictions
    n_tiles = len(predictions)
    patients = predictions["patient"].nunique() if "patient" in predictions else "?"
    navigation = " ".join(f'<a href="#figure-{name}">{name}</a>' for name, _ in FIGURES)
    body = f"""<p>{n_tiles} tiles of {patients} patients, {len(result.scores)} folds, each holding out whole
patients. Classes: {", ".join(CLASS_NAMES)}.</p>
<nav>{navigation}</nav>
<h2 id="metrics">Metrics per fold</h2>
{_metrics_section(result.scores)}
<h2 id="pooled">Per-class figures on all out-of-fold predictions</h2>
{_pooled_section(predictions)}
<h2 id="necrosis-table">Necrosis per patient</h2>
{_necrosis_section(necrosis)}
<h2 id="figures">Figures</h2>
{"".join(sections)}"""
    page = html_page(title, body, metadata=metadata)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_necrosis_report(out_dir, necrosis, *, title="hiercls necrosis report", metadata=None,
                          threshold=GOOD_RESPONSE, dpi=110):
    """Write ``out_dir/report.html`` of a necrosis table, and its figure as ``necrosis.png``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to write to; created if needed. ``report.html`` and ``necrosis.png`` are
        overwritten.
    necrosis : DataFrame
        One row per group (patient, slide, ...), as
        :func:`hiercls.evaluation.necrosis.necrosis_report` returns it; the index name
        names the groups in the table and the figure. Reference columns, where present,
        are shown too.
    title : str, default="hiercls necrosis report"
    metadata : dict or None, default=None
        Shown as a table under the title (e.g. model, tiles, options).
    threshold : float, default=0.90
        The good-response line of the figure.
    dpi : int, default=110
        Resolution of the figure.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``, self-contained (the figure embedded as base64 PNG).

    Examples
    --------
    >>> import tempfile
    >>> from hiercls.evaluation.necrosis import necrosis_from_probabilities
    >>> from hiercls.reporting.html import write_necrosis_report
    >>> table = necrosis_from_probabilities([[0.1, 0.8, 0.1], [0.0, 0.3, 0.7]], ["A", "A"],
    ...                                     n_bootstrap=0)
    >>> write_necrosis_report(tempfile.mkdtemp(), table).name
    'report.html'
    """
    if not hasattr(necrosis, "columns") or "necrotic_fraction" not in necrosis.columns:
        raise ValueError("necrosis must be a DataFrame with a 'necrotic_fraction' column, as "
                         "hiercls.evaluation.necrosis.necrosis_report returns")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    group = necrosis.index.name or "patient"
    data = png_bytes(plots.plot_necrosis(necrosis, threshold=threshold), dpi)
    (out_dir / "necrosis.png").write_bytes(data)
    encoded = base64.b64encode(data).decode("ascii")
    caption = (f"Necrotic fraction of the tumor per {group}: estimate with its interval"
               + (", against the pathologists' labels." if "reference_necrotic_fraction"
                  in necrosis.columns else "."))
    body = f"""<p>{int(necrosis["n_tiles"].sum()) if "n_tiles" in necrosis else "?"} tiles in
{len(necrosis)} group(s) by {html.escape(group)}.</p>
<h2 id="necrosis-table">Necrosis per {html.escape(group)}</h2>
{_necrosis_section(necrosis)}
<figure id="figure-necrosis"><img id="necrosis" alt="necrosis: {html.escape(caption)}"
src="data:image/png;base64,{encoded}"><figcaption>{html.escape(caption)}</figcaption></figure>"""
    page = html_page(title, body, metadata=metadata)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
