"""The figure blocks of README and docs/ equal their rendering from the committed results files."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "readme_figures", ROOT / "benchmarks" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_figures = _load_script()


def test_readme_figures_equal_the_committed_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rendered = readme_figures.render(readme, RESULTS)
    assert rendered == readme, (
        "README's figures differ from benchmarks/results/: run python benchmarks/readme_figures.py")


def test_every_page_of_the_guide_equals_its_rendering():
    assert readme_figures.main(["--check"]) == 0


def test_every_figure_block_is_on_a_page_and_not_empty():
    blocks = {}
    for page in readme_figures.pages():
        text = page.read_text(encoding="utf-8")
        blocks.update({m.group("name"): m.group("body")
                       for m in readme_figures.MARKER.finditer(text)})
    assert set(blocks) == set(readme_figures.BLOCKS)
    # A pending block stays empty until its results file is written.
    assert all(body.strip() for name, body in blocks.items()
               if name not in readme_figures.PENDING)
    # The headline row comes from paper_tables.json, digit for digit.
    runs = json.loads((RESULTS / "paper_tables.json").read_text())["runs"]
    head = [r["accuracy"] for r in runs if r["model"] == "fusion" and r["protocol"] == "A"
            and r["hierarchical"] and r["radiomics"]]
    assert readme_figures.mean_sd(head) in blocks["protocol-a"]


def test_the_bottom_line_quotes_the_default_pipelines_own_run():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = next(m.group("body") for m in readme_figures.MARKER.finditer(readme)
                if m.group("name") == "bottom-line")
    runs = json.loads((RESULTS / "generalization_headline.json").read_text())["runs"]
    assert readme_figures.mean_sd([r["accuracy"] for r in runs]) in body


def test_guide_pages_get_links_they_can_follow():
    text = "see [results](benchmarks/results/demo.md), [docs](docs/data.md) ![map](benchmarks/x.png)"
    assert readme_figures._for_the_guide(text) == (
        "see results: `benchmarks/results/demo.md`, [docs](data.md) "
        "(the figure: `benchmarks/x.png`)")


def test_a_value_marker_renders_its_field_and_a_wrong_field_is_named(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"a": {"b/c": [0.5, 75.0]}}))
    text = ("<!-- value r a.b/c.1 minutes -->?<!-- /value --> and "
            "<!-- value r a.b/c.0 .3f -->?<!-- /value -->")
    assert readme_figures.render(text, tmp_path) == (
        "<!-- value r a.b/c.1 minutes -->1.2 min<!-- /value --> and "
        "<!-- value r a.b/c.0 .3f -->0.500<!-- /value -->")
    with pytest.raises(ValueError, match="r.json has no field 'a.nope'"):
        readme_figures.render("<!-- value r a.nope .3f -->?<!-- /value -->", tmp_path)


def test_check_fails_on_a_hand_edited_figure(tmp_path, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = readme_figures.MARKER.search(readme[readme.index("<!-- figures:generalization-scores"):])
    edited = readme.replace(body.group(0), body.group(0).replace("0.", "0.9", 1))
    assert edited != readme
    path = tmp_path / "README.md"
    path.write_text(edited, encoding="utf-8")
    assert readme_figures.main(["--check", "--readme", str(path), "--results", str(RESULTS)]) == 1
    assert "run python benchmarks/readme_figures.py" in capsys.readouterr().err
    # Without --check it rewrites the block back to the results' figures.
    assert readme_figures.main(["--readme", str(path), "--results", str(RESULTS)]) == 0
    assert path.read_text(encoding="utf-8") == readme


def test_pages_missing_a_block_are_refused(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    page = docs / "benchmarks.md"
    page.write_text(page.read_text(encoding="utf-8").replace("<!-- figures:overhead -->", "")
                    .replace("<!-- /figures:overhead -->", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="no page has the figure blocks \\['overhead'\\]"):
        readme_figures.render_pages(readme_figures.pages(ROOT / "README.md", docs), RESULTS)


def test_new_fields_of_the_benchmarks_are_rendered(tmp_path):
    """demo.json, the cache state and the stage times, as the changed benchmarks write them."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "demo.json").write_text(json.dumps({
        "commit": "a" * 40, "dirty": False, "machine": {"logical_cpus": 2},
        "runs": [{"wall_s": 91.2, "load_average_start": [0.2, 0.3, 0.4]}]}))
    headline = json.loads((results / "paper_tables_headline.json").read_text())
    headline.update(cache={"cached_files_at_start": 0, "state": "cold"},
                    stages={"radiomics_s": 42.0, "backbone_views_s": 528.0})
    (results / "paper_tables_headline.json").write_text(json.dumps(headline))
    whole = json.loads((results / "paper_tables.json").read_text())
    whole["cache"] = {"cached_files_at_start": 9152, "state": "warm"}
    (results / "paper_tables.json").write_text(json.dumps(whole))
    readme = readme_figures.render((ROOT / "README.md").read_text(encoding="utf-8"), results)
    assert "91 s (load average 0.2 at start) on a 2-core machine" in readme
    page = readme_figures.render(BENCHMARKS_PAGE.read_text(encoding="utf-8"), results, guide=True)
    assert "with warm caches (9152 files)" in page
    # Under a minute in seconds: a stage read from a warm cache is not "0.0 min".
    assert ("from empty caches (of which the backbone's 8 views of every tile 8.8 min and "
            "the radiomics 42 s)") in page


def test_a_missing_results_file_gives_no_figure(tmp_path):
    page = readme_figures.render(BENCHMARKS_PAGE.read_text(encoding="utf-8"), tmp_path)
    assert "not measured yet: `python benchmarks/reproduce_paper.py`" in page
    assert "0.742" not in page
    readme = readme_figures.render((ROOT / "README.md").read_text(encoding="utf-8"), tmp_path)
    assert "not measured yet: `python benchmarks/generalization.py`" in readme
    # The pending necrosis slot stays empty without its results file.
    assert "<!-- figures:necrosis --><!-- /figures:necrosis -->" in readme


def test_a_quick_smoke_run_is_flagged_not_passed_off_as_the_figure(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "demo.json").write_text(json.dumps({
        "machine": {"logical_cpus": 2}, "quick": True,
        "runs": [{"wall_s": 12.0, "load_average_start": [0.8, 0.5, 0.3]}]}))
    readme = readme_figures.render((ROOT / "README.md").read_text(encoding="utf-8"), results)
    assert "12 s (load average 0.8 at start) on a 2-core machine (a `--quick` smoke run" in readme


def test_demo_time_quick_refuses_to_write_into_the_committed_results():
    spec = importlib.util.spec_from_file_location("demo_time", ROOT / "benchmarks" / "demo_time.py")
    demo_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_time)
    with pytest.raises(SystemExit):
        demo_time.parse_args(["--quick"])
    args = demo_time.parse_args(["--quick", "--out", "/tmp/x", "--", "--seed", "3"])
    assert args.demo_args == [*demo_time.QUICK_DEMO, "--seed", "3"]


def test_the_necrosis_line_quotes_the_benchmark():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = next(m.group("body") for m in readme_figures.MARKER.finditer(readme)
                if m.group("name") == "necrosis")
    payload = json.loads((RESULTS / "necrosis.json").read_text())
    default = next(r for r in payload["summary"] if r["method"] == "default")
    assert f"{default['mae']:.2f}" in body and "benchmarks/results/necrosis.md" in body


def test_the_criteria_block_quotes_both_criteria_and_every_levers_shift():
    page = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    body = next(m.group("body") for m in readme_figures.MARKER.finditer(page)
                if m.group("name") == "necrosis-criteria")
    payload = json.loads((RESULTS / "necrosis.json").read_text())
    rows = {r["method"]: r for r in payload["summary"]}
    other = next(key for key in rows if key.endswith(" criterion's choice"))
    assert f"{rows[other]['mae']:.3f}" in body and f"{rows['default']['mae']:.3f}" in body
    chosen = sum(c["lever"] == "radiomics-only" for c in payload["choices"])
    assert f"radiomics-only in {chosen}" in body or chosen == 0
    for lever in payload["choices"][0]["patient_shift"]:
        assert lever in body


def test_the_rate_shift_of_each_held_out_patient_is_quoted(tmp_path):
    """necrosis-rate-shift: each patient's tumor rate that departs most, from the results
    file's summary; a patient without a tumor class of 20 tiles is named, not dropped."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    payload = json.loads((results / "necrosis.json").read_text())
    classes = ["Non-Tumor", "Non-Viable-Tumor", "Viable-Tumor"]

    def rows(patient, tiles, bag):
        return [{"test_patient": patient, "true_class": true, "posterior_class": posterior,
                 "calibration": 0.8 if true == posterior else 0.1,
                 "bag": bag.get((true, posterior), 0.8 if true == posterior else 0.1),
                 "difference": bag.get((true, posterior), 0.8 if true == posterior else 0.1)
                 - (0.8 if true == posterior else 0.1), "n_tiles": tiles[true]}
                for true in classes for posterior in classes]

    payload["rate_shift_summary"] = (
        rows("Case-4", {"Non-Tumor": 78, "Non-Viable-Tumor": 90, "Viable-Tumor": 109},
             {("Non-Viable-Tumor", "Viable-Tumor"): 0.32, ("Viable-Tumor", "Viable-Tumor"): 0.75})
        # A large departure on a class of 2 tiles is noise, and is not quoted.
        + rows("Case-9", {"Non-Tumor": 50, "Non-Viable-Tumor": 2, "Viable-Tumor": 0},
               {("Non-Viable-Tumor", "Viable-Tumor"): 0.9}))
    (results / "necrosis.json").write_text(json.dumps(payload))
    page = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    rendered = readme_figures.render(page, results, guide=True)
    assert ("Case-4's non-viable-tumor tiles (90) get a mean viable-tumor posterior of 0.32 "
            "against 0.10 on the calibration set; Case-9 has no tumor class with 20 tiles") \
        in rendered
    del payload["rate_shift_summary"]
    (results / "necrosis.json").write_text(json.dumps(payload))
    assert "not measured yet" in readme_figures.necrosis_rate_shift(
        lambda name: json.loads((results / f"{name}.json").read_text()))
