"""Which levers help the full model, chosen on the training patients only.

Each lever is one setting of ``benchmarks/reproduce_paper.py`` (the radiomic channel and
regions, stain jitter). For each, the full model (frozen backbone, H-loss + radiomics) is

- **selected on**: leave-one-patient-out over protocol A's training patients (Case-3,
  Case-48, P9; Case-4 never seen), the mean accuracy over those three folds;
- **reported on**: protocol A (train on the three, test on Case-4), as the paper.

The lever with the best selection score becomes the benchmark's default; the Case-4
column is there to show what each lever did, not to choose. The radiomics-only logistic
regression of each setting sits beside it.

    python benchmarks/levers.py                 # all levers, 5 seeds each
    python benchmarks/levers.py --only baseline,nuclei --seeds 2
    python benchmarks/levers.py --subsample 4 --max-epochs 1   # other flags go to every
                                                               # lever's reproduce_paper.py

Writes benchmarks/results/levers.md and levers.json and prints the table. The stain
jitter lever computes the frozen backbone's features of every tile's 8 jittered views
once (cached like the plain ones), which is most of its wall time on a first run.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce_paper  # noqa: E402
from common import DATA_DIR, RESULTS_DIR, TEST_PATIENT, code_line, mean_sd, run_info, write_results  # noqa: E402

#: name -> (what it changes, reproduce_paper.py flags). The baseline is the paper's setting.
LEVERS = {
    "baseline": ("gray channel, whole tile (the paper's radiomics)",
                 ["--radiomics-channel", "gray", "--radiomics-mask", "full"]),
    "tissue": ("+ the tissue mask's 29", ["--radiomics-channel", "gray", "--radiomics-mask", "full,tissue"]),
    "nuclei": ("+ the nuclei mask's 29", ["--radiomics-channel", "gray", "--radiomics-mask", "full,nuclei"]),
    "tissue+nuclei": ("+ both masks' 29 each",
                      ["--radiomics-channel", "gray", "--radiomics-mask", "full,tissue,nuclei"]),
    "hematoxylin": ("hematoxylin channel, whole tile",
                    ["--radiomics-channel", "hematoxylin", "--radiomics-mask", "full"]),
    "hematoxylin, tissue+nuclei": ("hematoxylin channel, whole tile + both masks",
                                   ["--radiomics-channel", "hematoxylin",
                                    "--radiomics-mask", "full,tissue,nuclei"]),
    "stain jitter": ("baseline + HED-light jitter (0.05) of each cached view",
                     ["--radiomics-channel", "gray", "--radiomics-mask", "full",
                      "--stain-jitter", "0.05"]),
}
METRICS = ("accuracy", "f1_macro", "roc_auc_ovr")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated lever names")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="levers")
    parser.add_argument("--quiet", action="store_true")
    args, args.passed_on = parser.parse_known_args(argv)
    return args


def splits(groups):
    """(name, train, test) masks: the inner folds over the training patients, then A."""
    training = groups != TEST_PATIENT
    inner = [(patient, training & (groups != patient), groups == patient)
             for patient in sorted(np.unique(groups[training]))]
    return inner + [(TEST_PATIENT, training, ~training)]


def run_lever(name, data, args):
    flags = LEVERS[name][1]
    lever_args = reproduce_paper.parse_args(
        ["--data", str(args.data), "--seeds", str(args.seeds), "--quiet", *args.passed_on, *flags])
    X, codes, groups = data
    start = time.perf_counter()
    stages = reproduce_paper.warm_caches(lever_args, X)
    folds = splits(groups)
    jobs = [delayed(reproduce_paper.fusion_run)(lever_args, X, codes, "levers", patient, train,
                                                reproduce_paper.HEADLINE, seed, test=test)
            for patient, train, test in folds for seed in range(args.seeds)]
    fusion = list(Parallel(n_jobs=args.n_jobs)(jobs))
    logreg = {}
    for patient, train, test in folds:
        model = reproduce_paper.radiomics_logreg(lever_args).fit(X[train], codes[train])
        logreg[patient] = reproduce_paper.score_run(codes[test], model.predict_proba(X[test]))[0]
    keep = ("test_patient", "seed", *METRICS, "wall_s", "epochs")
    return {"lever": name, "change": LEVERS[name][0], "flags": flags,
            "fusion": [{key: run[key] for key in keep} for run in fusion],
            "radiomics_logreg": logreg, "stages": stages, "wall_s": time.perf_counter() - start}


def selection_score(result):
    """Mean over the inner folds of the per-fold mean accuracy."""
    folds = {}
    for run in result["fusion"]:
        if run["test_patient"] != TEST_PATIENT:
            folds.setdefault(run["test_patient"], []).append(run["accuracy"])
    return float(np.mean([np.mean(values) for values in folds.values()]))


def _test_runs(result):
    return {run["seed"]: run for run in result["fusion"] if run["test_patient"] == TEST_PATIENT}


def table(results):
    chosen = max(results, key=selection_score)
    base = next((r for r in results if r["lever"] == "baseline"), None)
    lines = ["| lever | change | selection: inner LOPO accuracy | Case-4 accuracy | Case-4 macro-F1 "
             "| Case-4 OvR AUC | Δ Case-4 accuracy vs baseline (p) | logreg: inner / Case-4 accuracy "
             "| wall |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        test = _test_runs(result)
        cells = [mean_sd([run[m] for run in test.values()]) for m in METRICS]
        delta = "-"
        if base is not None and result is not base:
            theirs = _test_runs(base)
            seeds = sorted(set(test) & set(theirs))
            ours_acc = [test[s]["accuracy"] for s in seeds]
            base_acc = [theirs[s]["accuracy"] for s in seeds]
            diff = np.subtract(ours_acc, base_acc)
            p = stats.ttest_rel(ours_acc, base_acc).pvalue if len(seeds) > 1 and diff.std() > 0 else float("nan")
            delta = f"{diff.mean():+.3f} ({p:.2f})"
        inner_logreg = np.mean([m["accuracy"] for patient, m in result["radiomics_logreg"].items()
                                if patient != TEST_PATIENT])
        name = f"**{result['lever']}** (chosen)" if result is chosen else result["lever"]
        lines.append(f"| {name} | {result['change']} | {selection_score(result):.3f} | "
                     + " | ".join(cells) + f" | {delta} | {inner_logreg:.3f} / "
                     f"{result['radiomics_logreg'][TEST_PATIENT]['accuracy']:.3f} | "
                     f"{result['wall_s'] / 60:.1f} min |")
    return lines, chosen


def main(argv=None):
    args = parse_args(argv)
    if not (args.data / "Training-Set-1").is_dir():
        print(f"data folder not found: {args.data} (pass --data)", file=sys.stderr)
        return 2
    names = list(LEVERS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        print(f"unknown lever(s) {unknown}; expected some of {list(LEVERS)}", file=sys.stderr)
        return 2
    # The code state as the run starts (an edit during the run would not be measured).
    info = run_info()
    cached_at_start = reproduce_paper.cached_files()
    data = reproduce_paper.load_data(reproduce_paper.parse_args(
        ["--data", str(args.data), *args.passed_on]))
    started = time.perf_counter()
    results = []
    for name in names:
        results.append(run_lever(name, data, args))
        if not args.quiet:
            result = results[-1]
            print(f"[{name}] selection {selection_score(result):.3f}; Case-4 accuracy "
                  f"{mean_sd([r['accuracy'] for r in _test_runs(result).values()])} "
                  f"({result['wall_s'] / 60:.1f} min)", flush=True)
    rows, chosen = table(results)
    lines = ["# Levers for the full model, chosen on the training patients only", "",
             code_line(info) + ".", "",
             f"Feature cache at start: {reproduce_paper.cache_state(cached_at_start)} "
             f"({cached_at_start} files). {args.seeds} seeds per lever and split (the same seeds); "
             f"wall time {(time.perf_counter() - started) / 60:.1f} min. Frozen "
             "tf_efficientnet_lite0 (offline ImageNet weights), H-loss + radiomics. "
             "Selection: leave-one-patient-out over Case-3, Case-48 and P9 (Case-4 unseen), "
             "mean of the three folds' mean accuracy. Case-4: protocol A, mean ± sd over "
             "seeds. Δ: mean paired difference of Case-4 accuracy against the baseline, p of a "
             "paired two-sided t-test (scipy.stats.ttest_rel). logreg: the radiomics-only "
             "logistic regression on the same radiomic features.", "", *rows, "",
             f"Chosen: **{chosen['lever']}** (`{' '.join(chosen['flags'])}`)."
             + (f" Flags passed on to every lever: `{' '.join(args.passed_on)}`."
                if args.passed_on else "")]
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.name, {**info, "seeds": args.seeds, "passed_on": args.passed_on,
                              "cache": {"cached_files_at_start": cached_at_start,
                                        "state": reproduce_paper.cache_state(cached_at_start)},
                              "wall_s": time.perf_counter() - started,
                              "chosen": chosen["lever"], "levers": results},
                  text, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
