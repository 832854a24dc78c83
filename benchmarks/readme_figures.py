"""The figures of README.md and docs/, rendered from the committed results files and nothing else.

A figure block sits between two marker comments, in README.md or any page of docs/::

    <!-- figures:NAME -->...<!-- /figures:NAME -->

and a single number quoted in prose between::

    <!-- value FILE KEY.PATH FORMAT -->...<!-- /value -->

(``FILE`` a results file's stem, ``KEY.PATH`` the keys down to the number, list items by
position, ``FORMAT`` ``seconds``, ``minutes``, ``percent`` or a format spec such as ``.3f``).
This script rewrites what lies between the markers from ``benchmarks/results/*.json``; the
prose around them is the page's own. After rerunning benchmarks::

    python benchmarks/readme_figures.py           # rewrite the blocks of README.md and docs/
    python benchmarks/readme_figures.py --check   # exit 1, with a diff, if a page differs

``tests/test_readme_figures.py`` runs the check, and ``tests/test_docs.py`` refuses a
measured figure typed into prose outside the markers, so pages and results cannot drift
apart. A figure whose results file (or field) is missing is not invented: the block says
which benchmark would measure it.
"""

import argparse
import difflib
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS_DIR, TEST_PATIENT, mean_sd  # noqa: E402

README = REPO / "README.md"
DOCS = REPO / "docs"
# A marker quoted in `code` is prose about markers, not one.
MARKER = re.compile(r"(?<!`)<!-- figures:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /figures:(?P=name) -->",
                    re.DOTALL)
VALUE = re.compile(r"(?<!`)<!-- value (?P<file>[\w-]+) (?P<path>\S+) (?P<format>\S+) -->"
                   r"(?P<body>.*?)<!-- /value -->", re.DOTALL)
#: Blocks whose benchmark is still to come: empty until its results file exists.
PENDING = set()
PAPER_ROW = "| paper: InceptionV3 fine-tuned + H-loss + radiomics | 0.86 | 0.86 | 0.96 |"


def load(results_dir, name):
    """A results file's JSON, or None when the benchmark has not written it."""
    path = Path(results_dir) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _minutes(seconds):
    """Minutes, or seconds under a minute (a stage read from a warm cache is not "0.0 min")."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _cores(payload):
    """Logical CPUs of the run: run_info's machine dict, or the older 'x86_64, cpu, 2 cores'."""
    machine = payload.get("machine")
    if isinstance(machine, dict):
        return machine.get("logical_cpus")
    found = re.search(r"(\d+) cores", str(machine or ""))
    return int(found.group(1)) if found else None


def _p(p):
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _paired(a, b, metric="accuracy"):
    """Mean paired difference over common seeds and the paired t-test's p (None if undefined)."""
    a = {run["seed"]: run[metric] for run in a}
    b = {run["seed"]: run[metric] for run in b}
    seeds = sorted(set(a) & set(b))
    diff = np.subtract([a[s] for s in seeds], [b[s] for s in seeds])
    p = (stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue
         if len(seeds) > 1 and diff.std() > 0 else None)
    return float(diff.mean()), p


def _fusion(payload, protocol, hierarchical, radiomics):
    return [run for run in payload["runs"] if run["model"] == "fusion"
            and run["protocol"] == protocol and run["hierarchical"] == hierarchical
            and run["radiomics"] == radiomics]


def _baseline(payload, protocol):
    return [run for run in payload["runs"]
            if run["model"] == "radiomics_logreg" and run["protocol"] == protocol]


def _row(label, runs):
    return f"| {label} | " + " | ".join(
        mean_sd([run[m] for run in runs]) for m in ("accuracy", "f1_macro", "roc_auc_ovr")) + " |"


def _lever(levers, name):
    return next((lever for lever in levers["levers"] if lever["lever"] == name), None)


def _case4(lever):
    return [run for run in lever["fusion"] if run["test_patient"] == TEST_PATIENT]


# --- the blocks --------------------------------------------------------------------------

def demo(results):
    payload = results("demo")
    if payload is None:
        return "time not recorded yet: `python benchmarks/demo_time.py` measures it"
    runs = payload["runs"]
    times = " and ".join(
        f"{run['wall_s']:.0f} s (load average {run['load_average_start'][0]:.1f} at start)"
        for run in runs)
    quick = " (a `--quick` smoke run, not the default demo)" if payload.get("quick") else ""
    return (f"{times} on a {_cores(payload)}-core machine{quick}, "
            f"[measured](benchmarks/results/demo.md)")


def radiomics_speed(results):
    payload = results("radiomics_speed")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/radiomics_speed.py`)\n"
    cpus = payload.get("machine", {}).get("logical_cpus") or payload.get(
        "environment", {}).get("cpu_count")
    lines = [f"Measured on a {cpus}-core machine:", ""]
    agreement = payload.get("agreement")
    if agreement:
        lines.append(
            f"- **agreement**: {agreement['tiles']:,} tiles × {{gray, hematoxylin}} × {{whole "
            f"tile, tissue mask}}: {agreement['violations']:,} of "
            f"{agreement['values_compared']:,} values off by more than "
            f"{_sci(payload['tolerance']['rtol'])} relative; largest relative error "
            f"{agreement['max_rel_err_overall']:.1e};")
    speed = payload.get("per_tile")
    if speed:
        full, tissue = speed["fast/full"], speed["fast/tissue"]
        slow_full, slow_tissue = speed["pyradiomics/full"], speed["pyradiomics/tissue"]
        lines.append(
            f"- **speed** (median per tile, JPEG decoding included, same {full['tiles']} "
            f"tiles, best of {full.get('repeats', 1)}): **{speed['speedup/full']:.0f}×** "
            f"faster with the whole-tile mask ({_ms(slow_full['median_s'])} → "
            f"{_ms(full['median_s'])}) and **{speed['speedup/tissue']:.0f}×** with the tissue "
            f"mask ({_ms(slow_tissue['median_s'])} → {_ms(tissue['median_s'])}). Of the fast "
            f"path's {_ms(tissue['median_s'])}, the extraction itself takes "
            f"{_ms(tissue['median_extract_only_s'])}; the rest is decoding and thresholding;")
    whole = payload.get("full_set")
    if whole:
        lines.append(
            f"- **whole set**: {whole['tiles']:,} tiles, tissue mask, {whole['n_jobs']} "
            f"processes: {whole['wall_s']:.1f} s, {whole['process_wall_s']:.1f} s counting the "
            f"start of Python and its workers; peak memory "
            f"{whole['peak_rss_sum_sampled_mb']:.0f} MB over all processes;")
    sizes = payload.get("sizes")
    if sizes:
        for size in payload["args"]["sizes"]:
            if size == 512:
                continue
            lines.append(
                f"- **{size} px** (512 px tiles upsampled, the data hold none larger): "
                f"PyRadiomics {_ms(sizes[f'{size}/pyradiomics/tissue']['median_s'])} vs fast "
                f"{_ms(sizes[f'{size}/fast/tissue']['median_s'])} per tile with the tissue mask.")
    if len(lines) > 2:
        lines[-1] = lines[-1].rstrip(";") + ("." if not lines[-1].endswith(".") else "")
    return "\n" + "\n".join(lines) + "\n"


def _sci(value):
    """1e-06 as 1e-6."""
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _ms(seconds):
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def protocol_a(results):
    payload, levers = results("paper_tables"), results("levers")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/reproduce_paper.py`)\n"
    lines = ["| model | accuracy | macro-F1 | OvR AUC |", "|---|---|---|---|", PAPER_ROW]
    for label, hierarchical, radiomics in (
            ("hiercls: Lite0 frozen + H-loss + radiomics", True, True),
            ("hiercls: Lite0 frozen + flat loss + radiomics", False, True),
            ("hiercls: Lite0 frozen + H-loss, image only", True, False),
            ("hiercls: Lite0 frozen + flat loss, image only", False, False)):
        runs = _fusion(payload, "A", hierarchical, radiomics)
        if runs:
            lines.append(_row(label, runs))
    base = _baseline(payload, "A")
    if base:
        lines.append(_row("radiomics-only logistic regression", base))
    baseline_lever = _lever(levers, "baseline") if levers else None
    if baseline_lever:
        lines.append(_row("hiercls with the paper's radiomics (gray, whole tile), H-loss",
                          _case4(baseline_lever)))
    return "\n" + "\n".join(lines) + "\n"


def findings(results):
    """The paired comparisons of protocol A and the levers, as sentences."""
    payload, levers = results("paper_tables"), results("levers")
    if payload is None:
        return "(not measured yet: `python benchmarks/reproduce_paper.py`)"
    full = _fusion(payload, "A", True, True)
    sentences = []
    image_only = _fusion(payload, "A", True, False)
    if full and image_only:
        diff, p = _paired(full, image_only)
        sentences.append(f"Radiomics carry the model ({diff:+.2f} accuracy over image only"
                         + (f", paired t-test p = {_p(p)})" if p is not None else ")"))
    base_a, base_b = _baseline(payload, "A"), _baseline(payload, "B")
    full_b = _fusion(payload, "B", True, True)
    if full and base_a:
        gap = np.mean([r["accuracy"] for r in full]) - base_a[0]["accuracy"]
        text = (f"the fusion {'beats' if gap > 0 else 'trails'} the radiomics-only baseline on "
                f"{TEST_PATIENT} by {abs(gap):.2f}")
        if full_b and base_b:
            ours = np.mean([np.mean([r["accuracy"] for r in full_b if r["test_patient"] == t])
                            for t in sorted({r["test_patient"] for r in full_b})])
            theirs = np.mean([r["accuracy"] for r in base_b])
            text += (f", {'and' if (ours > theirs) == (gap > 0) else 'though not'} on the mean "
                     f"of the leave-one-patient-out folds ({ours:.3f} vs {theirs:.3f})")
        sentences.append(text)
    flat = _fusion(payload, "A", False, True)
    if full and flat:
        diff, p = _paired(full, flat)
        sentences.append(f"the hierarchical loss over the flat one gives {diff:+.3f} accuracy"
                         + (f" (p = {_p(p)})" if p is not None else ""))
    out = "; ".join(sentences) + "." if sentences else ""
    if levers:
        chosen, base = _lever(levers, levers["chosen"]), _lever(levers, "baseline")
        if chosen and base and chosen is not base:
            diff, p = _paired(_case4(chosen), _case4(base))
            out += (f" The radiomics that `benchmarks/levers.py` chose ({chosen['change']}) "
                    f"give {diff:+.3f} {TEST_PATIENT} accuracy over the paper's (gray channel, "
                    "whole tile)" + (f", p = {_p(p)}" if p is not None else "") + ".")
        jitter = _lever(levers, "stain jitter")
        if jitter and base:
            diff, p = _paired(_case4(jitter), _case4(base))
            out += (f" Stain jitter of the frozen views changed {TEST_PATIENT} accuracy by {diff:+.3f}"
                    + (f" (p = {_p(p)})" if p is not None else "") + ".")
    return out


def _cache(payload):
    """How the cache stood when a run started, in words."""
    cache = payload.get("cache") or {}
    files = cache.get("cached_files_at_start", payload.get("settings", {}).get(
        "cached_files_at_start"))
    if files is None:
        return "(cache state at start not recorded)"
    return "from empty caches" if int(files) == 0 else f"with warm caches ({files} files)"


def _stages(payload):
    stages = payload.get("stages") or {}
    parts = []
    if stages.get("backbone_views_s") is not None:
        parts.append(f"the backbone's 8 views of every tile {_minutes(stages['backbone_views_s'])}")
    if stages.get("radiomics_s") is not None:
        parts.append(f"the radiomics {_minutes(stages['radiomics_s'])}")
    return f" (of which {' and '.join(parts)})" if parts else ""


def timing(results):
    sentences = []
    for name, what in (("paper_tables", "The whole benchmark"),
                       ("paper_tables_headline",
                        "the headline configuration alone (`--only headline`)")):
        payload = results(name)
        if payload is None:
            continue
        sentences.append(f"{what} took {_minutes(payload['wall_s'])} {_cache(payload)}"
                         f"{_stages(payload)}, peak memory {payload['peak_rss_gib']:.1f} GiB, "
                         f"on {_cores(payload)} cores")
    if not sentences:
        return "(not measured yet: `python benchmarks/reproduce_paper.py`)"
    return "; ".join(sentences) + "."


def overhead(results):
    payload = results("overhead")
    if payload is None:
        return "(not measured yet: `python benchmarks/overhead.py`)"
    configs = payload["configs"]
    parts = [f"{configs[name]['in_fit_shared']['cpu']['ratio_median']:.2f}× ({label})"
             for name, label in (("finetune", "fine-tuning"), ("frozen", "frozen backbone"))
             if name in configs]
    quick = " (a `--quick` smoke run)" if payload.get("settings", {}).get("quick") else ""
    return " and ".join(parts) + quick


def seeds(results):
    payload = results("paper_tables")
    if payload is None:
        return "(not measured yet)"
    head = _fusion(payload, "A", True, True)
    return str(len({run["seed"] for run in head}))


def slides(results):
    payload = results("slide_speed")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/slide_speed.py`)\n"
    res = payload["resolution"]
    quick = " (a `--quick` smoke run, not meaningful)" if payload.get("quick") else ""
    lines = ["", f"`benchmarks/slide_speed.py` ([results](benchmarks/results/slide_speed.md)){quick}, "
             f"on {_cores(payload)} cores, a model trained on the patients other than Case-4:", "",
             f"- **twice the resolution, declared**: Case-4's {res['tiles']} tiles upsampled to "
             f"{res['upsampled_to']} px with `mpp` = {res['declared_mpp']:g}: predictions agree "
             f"with those at the training resolution on {res['agreement']:.1%} of the tiles "
             f"(target 95 %); accuracy {res['accuracy_training_resolution']:.3f} → "
             f"{res['accuracy_twice_declared']:.3f};"]
    views = payload["views"]
    lines.append("- **views averaged at prediction** (Case-4 accuracy): " + ", ".join(
        f"{n}: {v['accuracy']:.3f}" for n, v in sorted(views.items(), key=lambda kv: int(kv[0]))) + ";")
    rows = payload["throughput"]
    large = [r for r in rows if r["slide"] == "large"]
    for r in large:
        lines.append(
            f"- **throughput**, caches off, a slide of {r['tiles']:,} tissue tiles at {r['views']} "
            f"view(s): {r['slide_tiles_per_s']:.2f} tiles/s, {r['slide_over_files']:.2f}× the same "
            f"tiles from JPEG files (target 0.9×) and {r['slide_over_limit']:.2f}× the backbone's "
            f"bare forward rate on the same views (target 0.85×); on a "
            f"{next((x['tiles'] for x in rows if x['slide'] == 'small'), 0)}-tile slide at "
            + ", ".join(f"{x['views']} views {x['slide_over_files']:.2f}× / {x['slide_over_limit']:.2f}×"
                        for x in rows if x["slide"] == "small") + ";")
    memory = payload["memory"]
    lines += [f"- **memory**: a slide of {memory['slide_4x']['tiles']} tiles peaks at "
              f"{memory['ratio_4x']:.2f}× the RSS of one of {memory['slide']['tiles']} "
              f"({memory['slide']['peak_rss_mib']:.0f} MiB; target 1.2×); the whole benchmark "
              f"took {_minutes(payload['seconds'])}.", ""]
    # The map is drawn on white (no pixel of the TCIA tiles), so it can be committed.
    if not payload.get("quick"):
        lines += ["![predicted class of each tile of a slide of Case-4 tiles, on white]"
                  "(benchmarks/results/slide_speed_overlay.png)", ""]
    return "\n".join(lines)


def _generalization(results, table):
    payload = results("generalization")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/generalization.py`)\n"
    import generalization  # its tables, so that README and the results file agree

    return "\n" + "\n".join(getattr(generalization, table)(payload)) + "\n"


def generalization_summary(results):
    payload = results("generalization")
    if payload is None:
        return "(not measured yet: `python benchmarks/generalization.py`)"
    chosen = payload["selection"][TEST_PATIENT]
    wall = payload["wall_s"]
    return (f"For protocol A the inner search chose **{chosen['chosen']}** "
            f"(features / radiomics / loss / internal validation), the necrosis estimator "
            f"\"{chosen['necrosis_estimator']}\" and an error margin of "
            f"{chosen['necrosis_error_margin']:.3f}; the whole benchmark took "
            f"{_minutes(wall['total'])} on {_cores(payload)} cores, commit "
            f"`{str(payload.get('commit'))[:10]}`")


def _headline_runs(payload, protocol, model):
    return [r for r in payload["runs"] if r["protocol"] == protocol and r["model"] == model]


def bottom_line(results):
    """The default pipeline on patients it never saw, in a few numbers."""
    headline, nested = results("generalization_headline"), results("generalization")
    if headline is None or nested is None:
        return "(not measured yet: `python benchmarks/generalization.py` and `--headline`)"
    runs = headline["runs"]
    logreg = _headline_runs(nested, "A", "radiomics_logreg")
    text = (f"On {TEST_PATIENT}, a patient it never saw, the default pipeline classifies "
            f"**{np.mean([r['accuracy'] for r in runs]):.0%}** of the tiles right "
            f"(accuracy {mean_sd([r['accuracy'] for r in runs])} over {len(runs)} seeds, "
            f"macro-F1 {mean_sd([r['f1_macro'] for r in runs])})")
    if logreg:
        text += (f"; a logistic regression on the radiomic features alone gets "
                 f"{logreg[0]['accuracy']:.3f}")
    lopo = _headline_runs(nested, "B", "fusion")
    if lopo:
        folds = {}
        for r in lopo:
            folds.setdefault(r["test_patient"], []).append(r)
        accuracy = np.mean([np.mean([r["accuracy"] for r in rs]) for rs in folds.values()])
        errors, right = [], []
        for rs in folds.values():
            nec = [r["necrosis"] for r in rs if r.get("necrosis")]
            if nec:
                estimate, reference = np.mean([n["estimate"] for n in nec]), nec[0]["reference"]
                errors.append(abs(estimate - reference))
                right.append((estimate >= 0.9) == (reference >= 0.9))
        text += (f". Leaving each of the {len(folds)} patients out in turn (every setting "
                 f"chosen the same way on the other patients): accuracy {accuracy:.3f} on "
                 "average")
        if errors:
            text += (f", the necrotic fraction off by {np.mean(errors):.2f} on average "
                     f"(mean absolute error over the {len(errors)} patients with tumor) "
                     f"and the response (>= 90 % necrosis) right for {sum(right)} of "
                     f"{len(right)}")
    return text + " ([benchmarks](docs/benchmarks.md))"


def quickstart_time(results):
    """How long the default pipeline's features take on the whole collection."""
    payload = results("generalization_headline")
    if payload is None:
        return "(not measured yet: `python benchmarks/generalization.py --headline`)"
    tiles = "all 1,144 tiles" if "--subsample" not in payload.get("command", "") else "a subsample"
    return (f"computing the default pipeline's features for {tiles} (radiomics, and the "
            f"frozen Lite2's 8 views of each tile) took {_minutes(payload['warm_s'])} on "
            f"{_cores(payload)} cores from empty caches, the whole run of "
            f"{payload.get('seeds', len(payload['runs']))} fits on protocol A "
            f"{_minutes(payload['wall_s'])} "
            "([measured](benchmarks/results/generalization_headline.md)); later fits read "
            "the features from the cache")


def split_cost(results):
    """What holding out whole patients for early stopping cost the default."""
    payload = results("generalization")
    if payload is None:
        return "(not measured yet: `python benchmarks/generalization.py`)"
    lever = next((lv for lv in payload["levers"]
                  if lv["lever"] == "validation" and lv["value"] == "patient split"), None)
    if lever is None:
        return "(not measured: the patient split is not among the levers)"
    return (f"{TEST_PATIENT} accuracy {mean_sd(lever['case4_accuracy'])} with the patient "
            f"split against {mean_sd(lever['chosen_case4_accuracy'])} with the tile split, "
            f"the same {len(lever['case4_accuracy'])} seeds, paired t-test p = "
            f"{_p(lever['paired_t_p'])} (`benchmarks/results/generalization.md`)")


def levers_choice(results):
    """What levers.py chose on this code, and how far apart its candidates were."""
    payload = results("levers")
    if payload is None:
        return "(not measured yet: `python benchmarks/levers.py`)"
    chosen = _lever(payload, payload["chosen"])
    inner = []
    for lever in payload["levers"]:  # levers.py's selection score: inner folds' mean accuracy
        folds = {}
        for run in lever["fusion"]:
            if run["test_patient"] != TEST_PATIENT:
                folds.setdefault(run["test_patient"], []).append(run["accuracy"])
        if folds:
            inner.append(float(np.mean([np.mean(v) for v in folds.values()])))
    text = f"Rerun on the commit of `benchmarks/results/levers.md`, it picks **{payload['chosen']}**"
    if chosen:
        text += f" ({chosen['change']})"
    if inner:
        text += (f", all {len(inner)} candidates within {max(inner) - min(inner):.3f} of each "
                 "other on that criterion")
    return text


def stain_jitter(results):
    """What levers.py measured for stain jitter of the frozen views."""
    payload = results("levers")
    jitter = _lever(payload, "stain jitter") if payload else None
    base = _lever(payload, "baseline") if payload else None
    if not (jitter and base):
        return "(not measured yet: `python benchmarks/levers.py`)"
    diff, p = _paired(_case4(jitter), _case4(base))
    return (f"{diff:+.3f} {TEST_PATIENT} accuracy against the same model without it "
            f"(frozen Lite0, {len(_case4(base))} seeds"
            + (f", paired t-test p = {_p(p)}" if p is not None else "") + ")")


def view_cost(results):
    """A frozen backbone's 8 views per tile, by backbone and size (benchmarks/view_cost.py)."""
    payload = results("view_cost")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/view_cost.py`)\n"
    quick = " (a `--quick` smoke run, not meaningful)" if payload.get("quick") else ""
    lines = ["", f"Seconds per tile for the 8 views, decoding and resizing included, on one CPU "
             f"thread, {payload['tiles']} real tiles after a warm-up tile, load average "
             f"{payload['load_average_start'][0]:.1f} at the start{quick} "
             "([results](benchmarks/results/view_cost.md)):", "",
             "| backbone | `image_size` | | wall s/tile | CPU s/tile | all 1,144 tiles (wall) |",
             "|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        lines.append(f"| `{row['backbone']}` | {row['image_size']} | {row['size_is']} | "
                     f"{row['wall_s_per_tile']:.2f} | {row['cpu_s_per_tile']:.2f} | "
                     f"{_minutes(row['wall_s_per_tile'] * 1144)} |")
    return "\n".join(lines) + "\n"


def _necrosis_rows(payload):
    rows = {row["method"]: row for row in payload["summary"]}
    return rows["default"], rows.get("pcc (slide)")


def necrosis(results):
    """One line: the chosen quantifier's unseen-patient error beside the expected counts'."""
    payload = results("necrosis")
    if payload is None:
        return ""
    default, pcc = _necrosis_rows(payload)
    right = sum(default["responses_right"].values())
    covered = sum(v >= 0.5 for v in default["covered"].values())
    counts = payload.get("lever_counts") or {}
    levers = ", ".join(f"{lever} in {n}" for lever, n in
                       sorted(counts.items(), key=lambda item: -item[1]))
    levers = (f" (the feature lever among them: {levers} of {sum(counts.values())} folds)"
              if counts else "")
    return (f"leave-one-patient-out, every choice made on the training patients{levers}, the "
            f"necrotic fraction is off by {default['mae']:.2f} on average "
            f"({payload['n_seeds']} seeds; the largest patient's error "
            f"{default['max_error']:.2f}; the expected counts: {pcc['mae']:.2f}), the response "
            f"right in {right} of {3 * payload['n_seeds']} patient-seeds, the interval "
            f"(mean width {default['mean_width']:.2f}) covering {covered} of 3 patients in "
            f"most seeds{_seeds_covering(default, payload)} "
            "([results](benchmarks/results/necrosis.md)). ")


def _seeds_covering(default, payload):
    """How many seeds' intervals hold at least two patients' references, where recorded."""
    if "seeds_covering" not in default:
        return ""
    return (f" (whole slides resampled; {default['seeds_covering']} of {payload['n_seeds']} "
            f"seeds cover at least {payload['targets']['coverage']})")


def necrosis_table(results):
    """Every quantifier's unseen-patient errors (benchmarks/necrosis.py)."""
    payload = results("necrosis")
    if payload is None:
        return "\n(not measured yet: `python benchmarks/necrosis.py`)\n"
    lines = ["", f"{payload['n_seeds']} seeds, {payload['wall_min']:.0f} min on 2 cores "
             "with warm feature caches; absolute error of the necrotic fraction, mean over "
             "seeds; the chosen method per fold and every other method under the same folds "
             "(the tiles and patient groupings of the calibration set on the first seed only) "
             "([results](benchmarks/results/necrosis.md)):", "",
             "| method | seeds | mean error | Case-3 | Case-4 | Case-48 | responses right | interval width |",
             "|---|---|---|---|---|---|---|---|"]
    order = sorted(payload["summary"], key=lambda r: (r["method"] != "default", r["mae"]))
    for row in order:
        errors = row["errors"]
        width = "n/a" if row["mean_width"] is None else f"{row['mean_width']:.2f}"
        lines.append(f"| {row['method']} | {row['n_seeds']} | {row['mae']:.3f} | "
                     + " | ".join(f"{errors.get(p, float('nan')):.3f}"
                                  for p in ("Case-3", "Case-4", "Case-48"))
                     + f" | {sum(row['responses_right'].values())} of "
                       f"{3 * row['n_seeds']} | {width} |")
    slides = payload.get("slides_summary") or {}
    if slides:
        lines += ["", f"Per slide ({slides['n_slides']} tumor slides of the held-out "
                  f"patients): mean error {slides['mae']:.3f} by the chosen method, "
                  f"{slides['pcc_mae']:.3f} by the expected counts."]
    return "\n".join(lines) + "\n"


def _necrosis_lever(results, lever, folder=None):
    """One lever of the features beside none, both under the criterion's method per fold
    (``benchmarks/necrosis.py --levers none,LEVER --out benchmarks/results/FOLDER``; with
    no folder, the headline run of every lever)."""
    name = "necrosis" if folder is None else f"{folder}/necrosis"
    payload = results(name)
    rows = {row["method"]: row for row in (payload or {}).get("summary", [])}
    if f"criterion's method [{lever}]" not in rows:
        command = "" if folder is None else f" --levers none,{lever} --out benchmarks/results/{folder}"
        return f"(not measured yet: `python benchmarks/necrosis.py{command}`)"
    on, off = rows[f"criterion's method [{lever}]"], rows["criterion's method [none]"]
    best = min((r for r in payload["summary"] if r["method"].endswith(f"[{lever}]")
                and not r["method"].startswith("criterion")), key=lambda r: r["mae"])
    counts = payload.get("lever_counts") or {}
    folds = sum(counts.values())
    return (f"leave one patient out, {payload['n_seeds']} seeds, the quantifier chosen per fold "
            f"as by default: the necrotic fraction off by {on['mae']:.3f} with it, "
            f"{off['mae']:.3f} without (largest patient's error {on['max_error']:.2f} against "
            f"{off['max_error']:.2f}); its best single method, {best['method']}, "
            f"{best['mae']:.3f}. Asked to choose, the criterion took it in "
            f"{counts.get(lever, 0)} of {folds} folds "
            f"([results](benchmarks/results/{name}.md))")


def necrosis_criteria(results):
    """The two criteria's choices and each lever's patient shift (benchmarks/necrosis.py)."""
    payload = results("necrosis")
    rows = {row["method"]: row for row in (payload or {}).get("summary", [])}
    key = next((key for key in rows if key.endswith(" criterion's choice")), None)
    choices = (payload or {}).get("choices", [])
    if key is None or not choices or "patient_shift" not in choices[0]:
        return "(not measured yet: `python benchmarks/necrosis.py`)"
    other, default = rows[key], rows["default"]
    name = key.removesuffix(" criterion's choice")
    criterion = payload["settings"].get("criterion", "shift")
    levers = Counter(c["lever"] for c in choices).most_common()
    others = Counter(c["other_criterion"]["lever"] for c in choices).most_common()
    shifts = {lever: np.mean([c["patient_shift"][lever] for c in choices])
              for lever in choices[0]["patient_shift"]}
    return (f"{payload['n_seeds']} seeds, {len(choices)} folds: the {criterion} criterion "
            "(the default) chose " + ", ".join(f"{lever} in {n}" for lever, n in levers)
            + f" and is off by {default['mae']:.3f} (largest patient's error "
            f"{default['max_error']:.2f}); the {name} criterion chose "
            + ", ".join(f"{lever} in {n}" for lever, n in others)
            + f" and is off by {other['mae']:.3f} ({other['max_error']:.2f}). The patient "
            "shift of each lever, mean over the folds: "
            + ", ".join(f"{lever} {value:.3f}" for lever, value in
                        sorted(shifts.items(), key=lambda item: item[1]))
            + " ([results](benchmarks/results/necrosis.md))")


def necrosis_rate_shift(results, min_tiles=20):
    """Where each held-out patient breaks the label-shift assumption (benchmarks/necrosis.py):
    of its tumor classes with at least ``min_tiles`` tiles, the mean tumor posterior that
    departs most from the calibration set's, mean over seeds."""
    payload = results("necrosis")
    summary = (payload or {}).get("rate_shift_summary")
    if not summary:
        return "(not measured yet: `python benchmarks/necrosis.py`)"
    table = pd.DataFrame(summary)
    tumor = ["Non-Viable-Tumor", "Viable-Tumor"]
    kept = table[table["true_class"].isin(tumor) & table["posterior_class"].isin(tumor)
                 & (table["n_tiles"] >= min_tiles)]
    parts = []
    for patient in table["test_patient"].unique():
        rows = kept[kept["test_patient"] == patient]
        if rows.empty:
            parts.append(f"{patient} has no tumor class with {min_tiles} tiles")
            continue
        worst = rows.loc[rows["difference"].abs().idxmax()]
        parts.append(f"{patient}'s {worst['true_class'].lower()} tiles "
                     f"({int(worst['n_tiles'])}) get a mean {worst['posterior_class'].lower()} "
                     f"posterior of {worst['bag']:.2f} against {worst['calibration']:.2f} on "
                     "the calibration set")
    return (f"Measured after every choice, on posteriors without a temperature, mean over "
            f"{payload['n_seeds']} seed(s): " + "; ".join(parts)
            + " ([results](benchmarks/results/necrosis.md))")


BLOCKS = {"demo": demo, "seeds": seeds, "radiomics-speed": radiomics_speed, "protocol-a": protocol_a,
          "findings": findings, "timing": timing, "overhead": overhead, "slides": slides,
          "generalization-summary": generalization_summary,
          "generalization-scores": lambda results: _generalization(results, "scores_table"),
          "generalization-necrosis": lambda results: _generalization(results, "necrosis_table"),
          "generalization-robustness": lambda results: _generalization(results, "robustness_table"),
          "generalization-levers": lambda results: _generalization(results, "levers_table"),
          "generalization-targets": lambda results: _generalization(results, "targets_table"),
          "bottom-line": bottom_line, "quickstart-time": quickstart_time,
          "split-cost": split_cost, "levers-choice": levers_choice, "stain-jitter": stain_jitter,
          "view-cost": view_cost, "necrosis": necrosis, "necrosis-table": necrosis_table,
          "standardize-lever": lambda results: _necrosis_lever(results, "standardize-patient", "necrosis-levers"),
          "adversary-lever": lambda results: _necrosis_lever(results, "adversary-patient", "necrosis-adversary"),
          "stain-jitter-lever": lambda results: _necrosis_lever(results, "stain-jitter", "necrosis-stain-jitter"),
          "radiomics-only-lever": lambda results: _necrosis_lever(results, "radiomics-only"),
          "necrosis-criteria": necrosis_criteria, "necrosis-rate-shift": necrosis_rate_shift}


def _field(payload, path):
    value = payload
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def _format(value, spec):
    if spec == "seconds":
        return _ms(value)
    if spec == "minutes":
        return _minutes(value)
    if spec == "percent":
        return f"{value:.0%}"
    return format(value, spec)


def _value(results, match):
    payload = results(match.group("file"))
    if payload is None:
        return f"(not measured yet: no benchmarks/results/{match.group('file')}.json)"
    try:
        value = _field(payload, match.group("path"))
    except (KeyError, IndexError, ValueError, TypeError):
        raise ValueError(f"{match.group('file')}.json has no field {match.group('path')!r} "
                         f"(a value marker names it)") from None
    return _format(value, match.group("format"))


_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>benchmarks/[^)\s]+)\)")
_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>(?:benchmarks|docs)/[^)\s]+)\)")


def _for_the_guide(body):
    """A block's links, written for README at the repository root, as a docs/ page needs
    them: pages of the guide relative to it, files outside it by name (mkdocs serves only
    docs/)."""
    body = _IMAGE.sub(lambda m: f"(the figure: `{m.group('target')}`)", body)
    return _LINK.sub(lambda m: (f"[{m.group('text')}]({m.group('target')[len('docs/'):]})"
                                if m.group("target").startswith("docs/")
                                else f"{m.group('text')}: `{m.group('target')}`"), body)


def render(text, results_dir=RESULTS_DIR, *, where="README", guide=False):
    """``text`` (a page) with every figure block and value rewritten from ``results_dir``;
    ``guide``: the page is in docs/ (links rewritten by :func:`_for_the_guide`)."""
    cache = {}

    def results(name):
        if name not in cache:
            cache[name] = load(results_dir, name)
        return cache[name]

    found = [m.group("name") for m in MARKER.finditer(text)]
    unknown = sorted(set(found) - set(BLOCKS))
    if unknown:
        raise ValueError(f"{where} has figure blocks {unknown}; expected some of {sorted(BLOCKS)}")
    adapt = _for_the_guide if guide else (lambda body: body)
    text = MARKER.sub(lambda m: f"<!-- figures:{m.group('name')} -->"
                      f"{adapt(BLOCKS[m.group('name')](results))}"
                      f"<!-- /figures:{m.group('name')} -->", text)
    return VALUE.sub(lambda m: f"<!-- value {m.group('file')} {m.group('path')} "
                     f"{m.group('format')} -->{_value(results, m)}<!-- /value -->", text)


def pages(readme=README, docs=DOCS):
    """The pages that hold figures: README and every page of the user guide."""
    return [Path(readme), *sorted(Path(docs).rglob("*.md"))]


def render_pages(paths, results_dir=RESULTS_DIR):
    """{path: (current text, rendered text)} of README (the first path) and the guide's
    pages; every block must sit on one page at least."""
    out, found = {}, set()
    for i, path in enumerate(paths):
        current = Path(path).read_text(encoding="utf-8")
        found |= {m.group("name") for m in MARKER.finditer(current)}
        out[path] = current, render(current, results_dir, where=str(path), guide=i > 0)
    missing = sorted(set(BLOCKS) - found)
    if missing:
        raise ValueError(f"no page has the figure blocks {missing} (markers "
                         "<!-- figures:NAME --> ... <!-- /figures:NAME -->)")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 with a diff if a page differs")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--docs", type=Path, default=DOCS, help="the user guide's folder")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    stale = []
    for path, (current, rendered) in render_pages(pages(args.readme, args.docs),
                                                  args.results).items():
        if rendered == current:
            continue
        stale.append(path)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(True), rendered.splitlines(True), str(path), "rendered"))
        else:
            path.write_text(rendered, encoding="utf-8")
            print(f"rewrote the figure blocks of {path}")
    if args.check and stale:
        print(f"\n{', '.join(map(str, stale))} differ from their results: run "
              "python benchmarks/readme_figures.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
