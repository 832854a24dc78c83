"""``hiercls necrosis``: per-group necrotic fraction of tiles from a saved model, as CSV and
HTML, the same table as ``necrosis_report``; its grouping, options and one-line errors."""

import inspect
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hiercls.cli import build_parser, main
from hiercls.cli.options import NECROSIS_OPTIONS, necrosis_options
from hiercls.data.datasets import make_synthetic_tiles, tcia_slide
from hiercls.evaluation.necrosis import necrosis_report

from .test_cli import FAST, TINY, _error


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """24 PNG tiles of 3 patients named by the TCIA convention (two slides per patient), in
    one folder per patient, and tiles.csv listing them with label and patient."""
    root = tmp_path_factory.mktemp("tcia-like")
    X, y, groups = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    rows = []
    for k, (image, label, patient) in enumerate(zip(X["image"], y, groups)):
        case = "Case-" + patient.split("-")[-1]
        relative = Path(case) / f"{case}-A{k % 2 + 1}-{100 * k}-{50 * k}.png"
        (root / case).mkdir(exist_ok=True)
        Image.fromarray(image).save(root / relative)
        rows.append({"image": relative.as_posix(), "label": int(label), "patient": case})
    pd.DataFrame(rows).to_csv(root / "tiles.csv", index=False)
    return root


@pytest.fixture(scope="module")
def model(tiles, tmp_path_factory):
    out = tmp_path_factory.mktemp("necrosis-model")
    path = out / "model.joblib"
    assert main(["fit", str(tiles / "tiles.csv"), "--model", str(path), *TINY, *FAST,
                 "--cache", str(out / "cache"), "--quiet"]) == 0
    return path


def _folder_tiles(folder):
    return pd.DataFrame({"image": sorted(str(p) for p in folder.resolve().glob("*.png"))})


def _run(argv, out, capsys):
    assert main(["necrosis", *argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return pd.read_csv(out / "necrosis.csv", index_col=0), captured


def test_one_group_per_folder_is_necrosis_report_of_the_model(tiles, model, tmp_path, capsys):
    folders = [tiles / "Case-1", tiles / "Case-2", tiles / "Case-3"]
    table, captured = _run([str(model), *map(str, folders), "--n-bootstrap", "200", "-q"],
                           tmp_path, capsys)
    assert table.index.name == "source" and list(table.index) == ["Case-1", "Case-2", "Case-3"]
    X = pd.concat([_folder_tiles(f) for f in folders], ignore_index=True)
    groups = pd.Series(np.repeat(["Case-1", "Case-2", "Case-3"],
                                 [len(_folder_tiles(f)) for f in folders]), name="source")
    # The tiles name their slide: the interval resamples whole slides, as slides= does.
    slides = [tcia_slide(path) for path in X["image"]]
    expected = necrosis_report(joblib.load(model), X, groups, n_bootstrap=200, slides=slides)
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-6,
                                  check_dtype=False)
    assert table["n_tiles"].sum() == 24
    assert set(table["response"]) <= {"good", "poor", "no tumor"}
    # The results table is printed even with --quiet, and nothing else is.
    assert captured.err == ""
    lines = captured.out.strip().splitlines()
    assert "necrosis" in lines[0] and "interval" in lines[0] and len(lines) == 2 + 3
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Necrosis per source" in page and "Case-2" in page
    assert (tmp_path / "necrosis.png").read_bytes().startswith(b"\x89PNG")


def test_patient_and_slide_from_the_file_names_and_a_csv_column(tiles, model, tmp_path, capsys):
    csv = str(tiles / "tiles.csv")
    common = [str(model), csv, "--n-bootstrap", "50", "-q"]
    by_patient, _ = _run([*common, "--by", "patient"], tmp_path / "patient", capsys)
    by_column, _ = _run([*common, "--groups", "patient"], tmp_path / "column", capsys)
    by_slide, _ = _run([*common, "--by", "slide"], tmp_path / "slide", capsys)
    assert by_patient.index.name == "patient" and list(by_patient.index) == [
        "Case-1", "Case-2", "Case-3"]
    # The CSV's patient column holds the same patients: the same table.
    pd.testing.assert_frame_equal(by_patient, by_column)
    assert by_slide.index.name == "slide" and len(by_slide) == 6
    assert by_slide.index.str.endswith(("-A1", "-A2")).all()
    for patient, count in by_patient["n_tiles"].items():
        assert by_slide.loc[by_slide.index.str.startswith(patient + "-"), "n_tiles"].sum() == count
    # Every tile of the CSV has a label: the pathologists' fractions come along.
    labels = pd.read_csv(csv)
    for patient, rows in labels.groupby("patient"):
        counts = rows["label"].value_counts()
        tumor = counts.get(1, 0) + counts.get(2, 0)
        expected = counts.get(1, 0) / tumor if tumor else np.nan
        assert by_patient.loc[patient, "reference_necrotic_fraction"] == pytest.approx(
            expected, nan_ok=True)
    assert "absolute_error" in by_patient.columns


def test_image_files_given_one_by_one_are_grouped_by_their_folder(tiles, model, tmp_path, capsys):
    files = [*sorted((tiles / "Case-1").glob("*.png"))[:3], *sorted((tiles / "Case-2").glob("*.png"))[:2]]
    table, _ = _run([str(model), *map(str, files), "--n-bootstrap", "0", "-q"], tmp_path, capsys)
    assert table["n_tiles"].to_dict() == {"Case-1": 3, "Case-2": 2}
    assert table["necrotic_fraction_low"].isna().all()             # --n-bootstrap 0: no interval


def test_options_reach_necrosis_report(tiles, model, tmp_path, capsys):
    argv = [str(model), str(tiles / "tiles.csv"), "--by", "patient", "-q"]
    # The model carries a quantifier (hiercls fit's default): cc asks for the argmax count.
    argmax, _ = _run([*argv, "--n-bootstrap", "0", "--necrosis-method", "cc"], tmp_path / "a",
                     capsys)
    np.testing.assert_allclose(argmax["necrotic_fraction"], argmax["necrotic_fraction_argmax"])
    nothing, _ = _run([*argv, "--n-bootstrap", "0", "--min-tumor-tiles", "1000"], tmp_path / "b",
                      capsys)
    assert (nothing["response"] == "no tumor").all()
    everything, _ = _run([*argv, "--n-bootstrap", "0", "--threshold", "0"], tmp_path / "c", capsys)
    assert set(everything["response"]) <= {"good", "no tumor"}
    wide, _ = _run([*argv, "--n-bootstrap", "0", "--error-margin", "1"], tmp_path / "d", capsys)
    tumor = wide["necrotic_fraction"].notna()
    assert (wide.loc[tumor, "necrotic_fraction_low"] == 0).all()
    assert (wide.loc[tumor, "necrotic_fraction_high"] == 1).all()
    # The counts' interval, whose bootstrap the tiny model's quantifier may pin at 0; per
    # slide, since a patient's two slides give the same extreme resamples under any seed.
    by_slide = [*argv[:2], "--by", "slide", "-q"]
    seeded = [_run([*by_slide, "--n-bootstrap", "100", "--seed", str(seed), "--necrosis-method",
                    "pcc"], tmp_path / f"s{seed}", capsys)[0] for seed in (1, 1, 2)]
    pd.testing.assert_frame_equal(seeded[0], seeded[1])
    assert not seeded[0]["necrotic_fraction_low"].equals(seeded[2]["necrotic_fraction_low"])


def test_every_option_is_a_keyword_of_necrosis_report_with_its_default():
    parameters = inspect.signature(necrosis_report).parameters
    args = build_parser().parse_args(["necrosis", "m.hiercls", "tiles", "--out", "o"])
    options = necrosis_options(args)
    assert set(options) == {keyword for _, keyword, _ in NECROSIS_OPTIONS}
    for keyword, value in options.items():
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert value == parameters[keyword].default, keyword
    set_ = build_parser().parse_args(["necrosis", "m", "t", "--out", "o", "--confidence", "0.8",
                                      "--tumor-threshold", "none", "--error-margin", "0.1"])
    assert necrosis_options(set_)["confidence"] == 0.8
    assert necrosis_options(set_)["tumor_threshold"] is None
    assert necrosis_options(set_)["error_margin"] == 0.1


def test_progress_is_shown_unless_quiet(tiles, model, tmp_path, capsys):
    _, captured = _run([str(model), str(tiles / "Case-1"), "--n-bootstrap", "10"], tmp_path,
                       capsys)
    assert "hiercls necrosis: 8 tiles in 1 group(s) by source" in captured.out
    assert "the interval resamples whole slides (2)" in captured.out
    assert "wrote" in captured.out
    assert "checking tiles" in captured.err                    # the progress bars


def test_bad_inputs_end_with_one_line(tiles, model, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    csv = str(tiles / "tiles.csv")
    message = _error(capsys, ["necrosis", str(model), csv, "--groups", "slide_id", *out])
    assert "--groups 'slide_id' names no column" in message and "'patient'" in message

    holes = tmp_path / "holes.csv"
    pd.read_csv(csv).assign(image=lambda t: [str(tiles / p) for p in t["image"]],
                            patient=lambda t: t["patient"].where(t.index > 1)).to_csv(holes)
    assert "is empty for 2 of 24 tiles" in _error(
        capsys, ["necrosis", str(model), str(holes), "--groups", "patient", *out])

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no image files" in _error(capsys, ["necrosis", str(model), str(empty), *out])
    header_only = tmp_path / "header.csv"
    header_only.write_text("image,patient\n")
    assert repr(str(header_only)) in _error(capsys, ["necrosis", str(model), str(header_only), *out])
    missing = tmp_path / "nowhere"
    assert "does not exist" in _error(capsys, ["necrosis", str(model), str(missing), *out])

    for name, content in (("model.joblib", b"not a pickle"), ("model.hiercls", b"not a model")):
        bad = tmp_path / name
        bad.write_bytes(content)
        assert "MODEL" in _error(capsys, ["necrosis", str(bad), csv, *out])

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "scan.png").write_bytes(next((tiles / "Case-1").glob("*.png")).read_bytes())
    message = _error(capsys, ["necrosis", str(model), str(plain), "--by", "slide", *out])
    assert "--by slide" in message and "scan.png" in message and "--groups" in message

    assert "--members needs a model ending in an ensemble" in _error(
        capsys, ["necrosis", str(model), csv, "--members", *out])
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    assert "is a file" in _error(capsys, ["necrosis", str(model), csv, "--out", str(a_file)])
    for option, value in (("--confidence", "1"), ("--n-bootstrap", "-1"),
                          ("--threshold", "1.5"), ("--min-tumor-tiles", "0")):
        with pytest.raises(SystemExit) as exit_:
            main(["necrosis", str(model), csv, *out, option, value])
        assert exit_.value.code == 2
        assert option in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["necrosis", str(model), csv, *out, "--by", "patient", "--groups", "patient"])
    assert "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()                     # nothing was written


def test_a_real_tcia_folder_brings_its_labels(real_data_dir, model, tmp_path, capsys):
    from hiercls.data.datasets import load_osteosarcoma_ut

    folder = real_data_dir / "Training-Set-1" / "set1"
    table, _ = _run([str(model), str(folder), "--by", "slide", "--n-bootstrap", "0", "-q"],
                    tmp_path, capsys)
    X, y, _ = load_osteosarcoma_ut(real_data_dir)
    # Both sides resolved: the data folder may be reached through a symbolic link.
    mine = (X["image"].map(lambda p: Path(p).resolve().parent) == folder.resolve()).to_numpy()
    slides, labels = X.loc[mine, "slide"].to_numpy(), y[mine].to_numpy()
    assert table["n_tiles"].to_dict() == pd.Series(slides).value_counts().sort_index().to_dict()
    for slide in table.index:
        tiles_of = labels[slides == slide]
        tumor = np.isin(tiles_of, ["Non-Viable-Tumor", "Viable-Tumor"]).sum()
        expected = (tiles_of == "Non-Viable-Tumor").sum() / tumor if tumor else np.nan
        assert table.loc[slide, "reference_necrotic_fraction"] == pytest.approx(expected,
                                                                               nan_ok=True)


def test_the_command_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "necrosis" in capsys.readouterr().out


def test_a_model_fitted_with_a_calibration_set_quantifies(tiles, tmp_path, capsys):
    from hiercls import load_model
    from hiercls.evaluation.quantification import DEFAULT_METHOD

    path = tmp_path / "quantified.hiercls"
    assert main(["fit", str(tiles / "tiles.csv"), "--model", str(path), *TINY, *FAST,
                 "--cache", str(tmp_path / "cache"), "--calibration", "tiles", "--quiet"]) == 0
    quantifier = load_model(path).necrosis_quantifier_
    assert quantifier.method == DEFAULT_METHOD and quantifier.calibration_proba_.shape == (24, 3)
    folders = [str(tiles / "Case-1"), str(tiles / "Case-2")]
    table, _ = _run([str(path), *folders, "--n-bootstrap", "20", "-q"], tmp_path / "auto", capsys)
    assert set(table["method"]) == {DEFAULT_METHOD} or table["necrotic_fraction"].isna().all()
    counts, _ = _run([str(path), *folders, "--necrosis-method", "pcc", "--n-bootstrap", "20",
                      "-q"], tmp_path / "pcc", capsys)
    assert set(counts["method"]) == {"pcc"}
    # With --calibration none the file carries no quantifier.
    bare = tmp_path / "bare.hiercls"
    assert main(["fit", str(tiles / "tiles.csv"), "--model", str(bare), *TINY, *FAST,
                 "--cache", str(tmp_path / "cache"), "--calibration", "none", "--quiet"]) == 0
    assert not hasattr(load_model(bare), "necrosis_quantifier_")


def test_the_necrosis_methods_of_the_cli_are_the_package_s():
    from hiercls.cli.options import _NECROSIS_METHOD
    from hiercls.evaluation.quantification import METHODS

    assert _NECROSIS_METHOD[2]["choices"] == ("auto", *METHODS)
