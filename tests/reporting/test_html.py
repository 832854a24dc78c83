import base64
import warnings
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.cross_validation import EvaluationResult
from hiercls.evaluation.metrics import paper_metrics
from hiercls.reporting import plots
from hiercls.reporting.html import FIGURES, write_report

from ..conftest import TINY_CLASSIFIER

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURE_IDS = {name for name, _ in FIGURES}


def _result(*, codes=None, gates=True, histories=True, seed=0):
    """An EvaluationResult built by hand: 3 patients (one fold each), 30 tiles."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(["P1", "P2", "P3"], 10)
    codes = np.tile([0, 1, 2, 0, 1, 2, 0, 1, 2, 2], 3) if codes is None else np.asarray(codes)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=codes.size)
    proba[np.arange(codes.size), codes] += 1.0  # better than chance
    proba /= proba.sum(axis=1, keepdims=True)
    predictions = pd.DataFrame(proba, columns=list(CLASS_NAMES))
    predictions["y_true"] = np.asarray(CLASS_NAMES, dtype=object)[codes]
    predictions["patient"] = patients
    predictions["fold"] = np.repeat([0, 1, 2], 10)
    if gates:
        predictions["gate_image"] = rng.uniform(0.3, 0.8, codes.size)
        predictions["gate_radiomics"] = 1.0 - predictions["gate_image"]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fold may lack a class: NaN figures
        for fold, patient in enumerate(["P1", "P2", "P3"]):
            part = predictions[predictions["patient"] == patient]
            rows.append({"test_patients": patient,
                         **paper_metrics(part["y_true"], part[list(CLASS_NAMES)])})
    scores = pd.DataFrame(rows).set_index("test_patients")
    history = [[{"epoch": e, "train_loss": 1.2 / e + f, "valid_loss": 1.3 / e + f,
                 "task_weight_tumor": 1.0 - 0.01 * e, "task_weight_viable": 1.0 - 0.02 * e}
                for e in range(1, 4)] for f in range(3)]
    return EvaluationResult(scores, predictions, history if histories else [None] * 3)


class _Collector(HTMLParser):
    """Every tag with its attributes, and the images by id."""

    def __init__(self):
        super().__init__()
        self.tags, self.images = [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "img":
            self.images[attrs.get("id")] = attrs


def _parse(path):
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def _check_self_contained(path):
    collector = _parse(path)
    assert set(collector.images) == FIGURE_IDS
    for name, attrs in collector.images.items():
        assert name in attrs["alt"]
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        data = base64.b64decode(attrs["src"][len(prefix):], validate=True)
        assert data.startswith(PNG_MAGIC)
        # The PNG saved beside the report is the same picture.
        assert (path.parent / f"{name}.png").read_bytes() == data
    for tag, attrs in collector.tags:
        assert tag not in ("script", "link", "iframe", "object")
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith(("data:", "#")), (tag, attrs[key][:80])
    return collector


def test_write_report_is_self_contained(tmp_path):
    result = _result()
    path = write_report(tmp_path / "out", result, title="Test <report>",
                        metadata={"backbone": "test_efficientnet", "note": "a < b"})
    assert path == tmp_path / "out" / "report.html"
    _check_self_contained(path)
    text = path.read_text(encoding="utf-8")
    assert "Test &lt;report&gt;" in text and "a &lt; b" in text  # escaped
    assert "accuracy" in text and "±" in text and "fold 2: P3" in text
    for patient in ("P1", "P2", "P3"):
        assert f"<td class=name>{patient}</td>" in text


def test_report_copes_with_missing_pieces(tmp_path):
    # No Non-Viable-Tumor tile anywhere, a patient without tumor, no gates, no histories.
    codes = [0] * 10 + [0, 2, 2, 0, 2, 2, 0, 2, 2, 2] * 2
    result = _result(codes=codes, gates=False, histories=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by zero on the way
        path = write_report(tmp_path, result)
    _check_self_contained(path)
    assert "no tumor" in path.read_text(encoding="utf-8")


def _texts(figure_or_axes):
    axes = getattr(figure_or_axes, "axes", None)
    axes = [figure_or_axes] if not isinstance(axes, list) else axes
    return " ".join(text.get_text() for ax in axes for text in ax.texts)


def test_plots_return_figures_and_note_what_is_undefined():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    y = np.array([0, 0, 2, 2, 0, 2])
    proba = np.array([[.8, .1, .1], [.6, .2, .2], [.2, .1, .7], [.3, .3, .4], [.4, .1, .5],
                      [.1, .1, .8]])
    roc = plots.plot_roc_curves(y, proba)
    assert "ROC undefined" in _texts(roc.axes[1])
    assert "ROC undefined" not in _texts(roc.axes[0])
    confusion = plots.plot_confusion_matrix(y, proba)
    assert "no tiles" in _texts(confusion)
    assert "no gate weights" in _texts(plots.plot_gate_weights(y, None))
    assert "no losses" in _texts(plots.plot_training_curves([None, None]))
    necrosis = pd.DataFrame({"necrotic_fraction": [0.95, np.nan],
                             "reference_necrotic_fraction": [0.9, np.nan]},
                            index=pd.Index(["A", "B"], name="patient"))
    figures = [roc, confusion, plots.plot_calibration(y, proba),
               plots.plot_gate_weights(y, np.full(6, 0.5)),
               plots.plot_training_curves(_result().histories),
               plots.plot_necrosis(necrosis)]
    ticks = [label.get_text() for label in figures[-1].axes[0].get_xticklabels()]
    assert ticks == ["A", "B\nno tumor"]
    assert all(isinstance(fig, Figure) for fig in figures)
    assert plt.get_fignums() == before  # nothing left open in pyplot
    assert matplotlib.get_backend()  # importing hiercls.reporting.plots did not break the backend


def test_plots_validate_inputs():
    with pytest.raises(ValueError, match="proba has 2 rows"):
        plots.plot_roc_curves([0, 1, 2], np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="gate_image"):
        plots.plot_gate_weights([0, 1, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="necrotic_fraction"):
        plots.plot_necrosis(pd.DataFrame({"x": [1]}))


def test_report_from_cross_validation(tmp_path):
    from hiercls import make_fusion_pipeline
    from hiercls.data.datasets import make_synthetic_tiles
    from hiercls.evaluation.cross_validation import cross_validate_by_patient
    from hiercls.features.radiomics import transformer

    backend = "fast" if "fast" in getattr(transformer, "BACKENDS", ()) else "pyradiomics"
    X, y, groups = make_synthetic_tiles(n_tiles=36, n_patients=3, size=32)
    pipeline = make_fusion_pipeline(preset="none", **(TINY_CLASSIFIER | {"max_epochs": 1}),
                                    radiomics__mask="full", radiomics__backend=backend)
    result = cross_validate_by_patient(pipeline, X, y, groups, verbose=0)
    assert "task_weight_tumor" in result.histories[0][0]  # what the training figure plots
    _check_self_contained(write_report(tmp_path, result))


def test_necrosis_report_names_the_groups_and_embeds_its_figure(tmp_path):
    from hiercls.evaluation.necrosis import necrosis_from_probabilities
    from hiercls.reporting.html import write_necrosis_report

    proba = [[0.0, 0.9, 0.1], [0.0, 0.7, 0.3], [1.0, 0.0, 0.0], [0.9, 0.05, 0.05]]
    slides = pd.Series(["Case-4-C21", "Case-4-C21", "Case-4-C22", "Case-4-C22"], name="slide")
    table = necrosis_from_probabilities(proba, slides, n_bootstrap=50, min_tumor_tiles=0.5)
    path = write_necrosis_report(tmp_path, table, title="Case 4 <slides>",
                                 metadata={"model": "m.hiercls"})
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "report.html"
    assert "<title>Case 4 &lt;slides&gt;</title>" in page          # escaped
    assert "Necrosis per slide" in page and "<th class=name>slide</th>" in page
    assert "80.0 %" in page and "no tumor" in page                 # C21 at 0.8; C22 below 0.5
    assert "m.hiercls" in page
    png = (tmp_path / "necrosis.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert base64.b64encode(png).decode("ascii") in page           # the same figure, embedded
    with pytest.raises(ValueError, match="necrotic_fraction"):
        write_necrosis_report(tmp_path, pd.DataFrame({"x": [1]}))
