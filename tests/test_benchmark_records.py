"""benchmarks/common.py: what every results file records about the code it measured."""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    """A small git repository holding benchmarks/common.py, committed; its module."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "common.py", repo / "benchmarks" / "common.py")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    spec = importlib.util.spec_from_file_location("bench_common", repo / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return repo, module


def test_a_clean_tree_records_its_commit_and_no_dirty_files(checkout):
    repo, common = checkout
    info = common.run_info("python bench.py")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert info["commit"] == head and info["dirty"] is False and info["dirty_files"] == []
    assert f"commit `{head}` (clean tree); command `python bench.py`" in common.code_line(info)


def test_a_changed_tracked_file_makes_the_run_dirty_and_is_named(checkout):
    repo, common = checkout
    (repo / "code.py").write_text("x = 2\n")
    (repo / "untracked_results.json").write_text("{}")  # results being written do not count
    info = common.run_info()
    assert info["dirty"] is True and info["dirty_files"] == ["code.py"]
    assert "dirty: 1 tracked file(s) changed (code.py)" in common.code_line(info)


def test_write_results_goes_to_the_folder_asked_for(checkout, tmp_path):
    _, common = checkout
    out = tmp_path / "smoke"
    paths = common.write_results("demo", {"commit": "c", "dirty": False}, "# demo", out_dir=out)
    assert paths == [out / "demo.json", out / "demo.md"]
    assert json.loads(paths[0].read_text())["dirty"] is False
    assert not (common.RESULTS_DIR / "demo.json").exists()


def test_results_files_and_readme_written_by_benchmarks_leave_the_run_clean(checkout):
    repo, common = checkout
    (repo / "benchmarks" / "results").mkdir()
    (repo / "benchmarks" / "results" / "a.json").write_text("{}")
    (repo / "README.md").write_text("figures\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "outputs")
    (repo / "benchmarks" / "results" / "a.json").write_text('{"new": 1}')
    (repo / "README.md").write_text("new figures\n")
    assert common.code_state()["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert common.code_state()["dirty_files"] == ["code.py"]


def test_an_older_results_file_without_a_dirty_flag_says_so():
    spec = importlib.util.spec_from_file_location("bench_common2", ROOT / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert "dirty flag unrecorded" in common.code_line({"commit": "abc", "command": "x"})
    assert common.mean_sd([0.5, None, float("nan"), 0.7]) == "0.600 ± 0.141"
    assert common.mean_sd([None]) == "n/a"


@pytest.mark.parametrize("script", ["reproduce_paper.py", "levers.py", "overhead.py",
                                    "radiomics_speed.py", "demo_time.py"])
def test_every_benchmark_records_through_common(script):
    """No benchmark keeps its own git helper: each writes run_info() through common."""
    text = (ROOT / "benchmarks" / script).read_text(encoding="utf-8")
    assert "from common import" in text and "run_info" in text and "write_results(" in text
    assert '"rev-parse"' not in text and "_mean_sd" not in text


BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "common.py")
#: What common.py holds, as a benchmark would spell its own copy of it.
COPIES = {
    "the data path (common.DATA_DIR)": r"osteosarcoma-ut-512",
    "the results folder (common.RESULTS_DIR)": r'"benchmarks" / "results"|HERE / "results"',
    "the commit (common.git / run_info)": r'\["git", "rev-parse"|_git\(',
    "the load average (common.load_average)": r"getloadavg",
    "the machine (common.machine)": r"platform\.(platform|python_version)|/proc/cpuinfo",
    "the test patient (common.TEST_PATIENT)": r'TEST_PATIENT = "',
    "undefined values (common.defined, common.mean_sd)": r"def _?(defined|mean_sd)\(",
    "another script's private helper": r"reproduce_paper\._",
    "a private attribute of a hiercls object": r"\._decoded\b",
}


@pytest.mark.parametrize("script", BENCHMARKS)
def test_no_benchmark_keeps_its_own_copy_of_what_common_holds(script):
    import re

    text = (ROOT / "benchmarks" / script).read_text(encoding="utf-8")
    found = [what for what, pattern in COPIES.items() if re.search(pattern, text)]
    assert not found, f"{script} keeps its own {found}"
    assert text.count("sys.path") <= 1, f"{script} edits sys.path more than once"
    assert re.search(r"^(from common import|import common)", text, re.MULTILINE)


def test_common_helpers_that_benchmarks_share(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_common3", ROOT / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert common.defined([0.5, None, float("nan"), 2]) == [0.5, 2.0]
    load = common.load_average()
    assert len(load) == 3 and all(value >= 0 for value in load)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = common.child_env(OMP_NUM_THREADS="1")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(common.REPO), "/elsewhere"]
    assert env["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("PYTHONPATH")
    assert common.child_env()["PYTHONPATH"] == str(common.REPO)
