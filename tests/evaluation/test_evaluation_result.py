"""EvaluationResult.save / load: the files of ``hiercls evaluate``, read back unscored."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from hiercls import CLASS_NAMES
from hiercls.evaluation import metrics
from hiercls.evaluation.cross_validation import (
    EvaluationResult,
    cross_validate_by_patient,
)


@pytest.fixture
def result():
    """Leave-one-patient-out of a logistic regression, with gates, histories and settings."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(18, 3)), columns=["a", "b", "c"])
    y = np.tile([0, 1, 2], 6)
    groups = np.repeat(["p1", "p2", "p3"], 6)
    result = cross_validate_by_patient(LogisticRegression(), X, y, groups, verbose=0)
    predictions = result.predictions.copy()
    predictions.insert(0, "image", [f"/tiles/{k}.png" for k in range(len(X))])
    predictions["gate_image"] = rng.uniform(size=len(X))
    predictions["gate_radiomics"] = 1 - predictions["gate_image"]
    histories = [[{"epoch": 1, "train_loss": np.float32(0.5), "valid_loss": 0.25,
                   "batches": [{"loss": 1.0}]}], None, []]
    return EvaluationResult(result.scores, predictions, histories,
                            metadata={"title": "a run", "seconds": 1.5})


def test_save_writes_the_files_of_hiercls_evaluate(result, tmp_path):
    result.save(tmp_path)
    for name in EvaluationResult.FILES:
        assert (tmp_path / name).is_file()
    per_fold = pd.read_csv(tmp_path / "metrics.csv")
    assert per_fold["fold"].tolist() == [0, 1, 2]
    assert sorted(per_fold["test_patients"]) == ["p1", "p2", "p3"]
    summary = pd.read_csv(tmp_path / "metrics_summary.csv", index_col="metric")
    assert summary.loc["accuracy", "mean"] == pytest.approx(result.scores["accuracy"].mean())
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predictions.columns[:5]) == ["image", *CLASS_NAMES, "predicted"]
    proba = predictions[list(CLASS_NAMES)].to_numpy()
    assert predictions["predicted"].tolist() == [CLASS_NAMES[k] for k in proba.argmax(axis=1)]
    histories = json.loads((tmp_path / "histories.json").read_text())
    assert histories == [[{"epoch": 1, "train_loss": 0.5, "valid_loss": 0.25}], None, []]
    assert json.loads((tmp_path / "run.json").read_text()) == {"title": "a run", "seconds": 1.5}


def test_save_then_load_gives_the_same_result(result, tmp_path):
    result.save(tmp_path)
    loaded = EvaluationResult.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.scores, result.scores, check_exact=True)
    pd.testing.assert_frame_equal(loaded.predictions, result.predictions, check_exact=True)
    assert loaded.histories == [[{"epoch": 1, "train_loss": 0.5, "valid_loss": 0.25}], None, []]
    assert loaded.metadata == result.metadata
    # its own predictions.csv names the folder too
    again = EvaluationResult.load(tmp_path / "predictions.csv")
    pd.testing.assert_frame_equal(again.scores, result.scores)


def test_load_without_histories_and_settings(result, tmp_path):
    result.save(tmp_path)
    (tmp_path / "histories.json").unlink()
    (tmp_path / "run.json").unlink()
    loaded = EvaluationResult.load(tmp_path)
    assert loaded.histories == [None, None, None] and loaded.metadata is None


def test_load_names_a_missing_or_incomplete_file(result, tmp_path):
    result.save(tmp_path)
    pd.read_csv(tmp_path / "predictions.csv").drop(columns="fold").to_csv(
        tmp_path / "predictions.csv", index=False)
    with pytest.raises(ValueError, match=r"predictions.csv' lacks the column\(s\) 'fold'"):
        EvaluationResult.load(tmp_path)
    result.save(tmp_path)
    (tmp_path / "metrics.csv").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        EvaluationResult.load(tmp_path)


def test_the_report_of_a_saved_run_does_not_score_again(result, tmp_path, monkeypatch, capsys):
    from hiercls.cli import main

    result.save(tmp_path / "run")
    # A saved figure that scoring the predictions again could not give.
    per_fold = pd.read_csv(tmp_path / "run" / "metrics.csv")
    per_fold["accuracy"] = 0.4321
    per_fold.to_csv(tmp_path / "run" / "metrics.csv", index=False)

    def refuse(*args, **kwargs):
        raise AssertionError("paper_metrics called: the report scored the folds again")

    monkeypatch.setattr(metrics, "paper_metrics", refuse)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "page"), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "0.432" in printed.split("accuracy", 1)[1].splitlines()[0]
    assert "<title>a run</title>" in (tmp_path / "page" / "report.html").read_text()
