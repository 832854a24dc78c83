"""The necrotic fraction of an unseen patient: quantification methods, nested, on the TCIA tiles.

For each outer test patient (leave one patient out over Case-3, Case-4 and Case-48, the
three with tumor; P9 has none, so there is nothing to score when it is held out, and its
fold is not run) and each seed:

1. the default pipeline (``make_fusion_pipeline()``, ``random_state=seed``) is fitted on
   the three other patients and predicts the test patient's tiles;
2. the *calibration set* is made from the training patients only: out-of-fold
   probabilities of their tiles (:func:`~hiercls.evaluation.quantification.out_of_fold_proba`,
   5 folds), by whole slides and, where ``--groupings`` asks, by tiles;
3. the *criterion* (:func:`~hiercls.evaluation.quantification.quantification_scores`)
   scores every method and grouping on those out-of-fold probabilities alone:
   leave-one-slide-out over the training patients' slides (real bags with their own
   fractions) and the artificial prevalence protocol (QuaPy's APP, bags of 100 held-out
   tiles over the simplex). The score is the mean of the two errors; the lowest is the
   fold's ``"default"`` choice. Nothing the test patient holds enters it. The *patient
   criterion* (``--criterion patient``; always measured, its choice a row beside the
   default) adds the inner patient replica: each training patient with tumor whose
   companions hold every class is estimated by a model and quantifier fitted on those
   companions alone, the one test of the criterion that meets an unseen patient;
4. every method (and the choice) estimates the test patient's necrotic fraction and a 95 %
   bootstrap interval (tiles of the bag and the calibration set resampled, the adjustment
   refitted each time), and each of the test patient's tumor slides likewise.

With ``--levers`` (all of :data:`LEVERS` by default) steps 1-4 run for each lever of the
features as well (per-patient or per-slide standardization, HED stain jitter, a patient
adversary, the radiomic features alone): the criterion then chooses the lever with the
method, on the same out-of-fold scores, and each lever's own choice is a row of the table.

The package's :data:`~hiercls.evaluation.quantification.DEFAULT_METHOD` is the method the
criterion chose most often across the folds and seeds here; the per-fold choices (and
their scores) are in the results file.

    python benchmarks/necrosis.py                      # 5 seeds, the results file
    python benchmarks/necrosis.py --seeds 1 --out /tmp/n   # one seed, elsewhere

Writes benchmarks/results/necrosis.json and necrosis.md.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from common import DATA_DIR, run_info, write_results

import hiercls
from hiercls.data.datasets import load_osteosarcoma_ut
from hiercls.data.labels import encode_labels
from hiercls.evaluation.necrosis import GOOD_RESPONSE
from hiercls.evaluation.quantification import (
    METHODS,
    RECALIBRATIONS,
    PrevalenceQuantifier,
    SingularAdjustmentError,
    necrotic_fraction,
    out_of_fold_proba,
    quantification_scores,
)

TEST_PATIENTS = ("Case-3", "Case-4", "Case-48")
#: Targets of the issue, printed beside the figures.
TARGETS = {"mae": 0.08, "max_error": 0.15, "coverage": 2, "width": 0.35}


def _fraction(codes):
    tumor = codes[codes > 0]
    return float(np.mean(tumor == 1)) if tumor.size else float("nan")


def _estimate(quantifier, proba, n_bootstrap, seed):
    """Point estimate and percentile interval of a bag's necrotic fraction."""
    estimate = quantifier.necrotic_fraction(proba)
    if not n_bootstrap:
        return estimate, float("nan"), float("nan")
    replicates = necrotic_fraction(quantifier.bootstrap(proba, n_bootstrap, random_state=seed))
    replicates = replicates[~np.isnan(replicates)]
    low, high = np.percentile(replicates, [2.5, 97.5]) if replicates.size else (np.nan, np.nan)
    return estimate, float(low), float(high)


#: The levers of item 4 measured beside the default pipeline: each a set of parameters of
#: ``make_fusion_pipeline`` against what a patient's look gives all its tiles.
LEVERS = {
    "none": {},
    # Each patient's (slide's) features standardized with its own tiles' statistics, in
    # training and at prediction (hiercls.features.group_standardization).
    "standardize-patient": {"standardize_by": "patient"},
    "standardize-slide": {"standardize_by": "slide"},
    # HED stain augmentation of every cached view (Tellez et al.'s "HED-light").
    "stain-jitter": {"stain_jitter": 0.05},
    # A head guessing the patient from the fused embedding through a gradient reversal
    # (hiercls.nn.adversary; Ganin et al.'s domain-adversarial training).
    "adversary-patient": {"adversary_by": "patient"},
    # No image branch: the 29 radiomic features alone, which carry less of a patient's look.
    "radiomics-only": {"use_image": False},
}


def _lever_predictions(X, y, codes, train, seed, lever, args, timings):
    """The outer fit's test probabilities and the calibration sets of one lever."""
    params = LEVERS[lever]
    make = lambda: hiercls.make_fusion_pipeline(random_state=seed, verbose=0, **params)  # noqa: E731
    t0 = time.perf_counter()
    proba = make().fit(X[train], y[train]).predict_proba(X[~train])
    timings[f"{lever}_outer_fit_s"] = time.perf_counter() - t0
    calibration = {}
    groupings = args.groupings if seed < args.grouping_seeds and lever == "none" else ["slide"]
    for by in groupings:
        t1 = time.perf_counter()
        groups = {"slide": X["slide"], "patient": X["patient"]}.get(by)
        groups = None if groups is None else groups[train].to_numpy()
        try:
            calibration[by] = out_of_fold_proba(make(), X[train], y[train], groups=groups,
                                                by=by, n_splits=5, random_state=seed)
        except ValueError as error:  # a patient fold without a class: recorded, not run
            timings[f"{lever}_oof_{by}_skipped"] = str(error)
            continue
        timings[f"{lever}_oof_{by}_s"] = time.perf_counter() - t1
    return proba, calibration


#: An inner patient is replayed only where its companions hold this many tiles of every
#: class: a model that has (almost) never seen a class cannot tell one setting from another.
#: Fixed before any replica ran; every value from 5 to 89 selects the same inner folds.
MIN_CLASS_TILES = 20


def _patient_replica(X, y, codes, train, seed, lever, timings):
    """The outer fold replayed inside the training patients: ``patient_mae`` per method.

    Each training patient with tumor whose companions hold every class (at least
    :data:`MIN_CLASS_TILES` tiles each) is held out in turn; the lever's pipeline is fitted
    on the companions, their slide-grouped out-of-fold posteriors calibrate every method,
    and the error of its necrotic fraction is recorded. This is the only part of the
    criterion that meets a patient no model has seen, which is what a lever acts on; the
    leave-one-slide-out bags and the APP draw tiles of patients the models were fitted on.
    """
    make = lambda: hiercls.make_fusion_pipeline(random_state=seed, verbose=0,  # noqa: E731
                                                **LEVERS[lever])
    patients = X["patient"].to_numpy()
    errors, held_out = {}, []
    for held in sorted(set(patients[train])):
        inner = train & (patients != held)
        outer = train & (patients == held)
        reference = _fraction(codes[outer])
        if np.isnan(reference) or np.bincount(codes[inner], minlength=3).min() < MIN_CLASS_TILES:
            continue
        t0 = time.perf_counter()
        proba = make().fit(X[inner], y[inner]).predict_proba(X[outer])
        calibration = out_of_fold_proba(make(), X[inner], y[inner],
                                        groups=X["slide"][inner].to_numpy(), by="slide",
                                        n_splits=5, random_state=seed)
        for name in METHODS:
            for recal in RECALIBRATIONS:
                try:
                    estimate = PrevalenceQuantifier(name, recal).fit(
                        calibration, codes[inner]).necrotic_fraction(proba)
                except SingularAdjustmentError:
                    estimate = float("nan")
                errors.setdefault((name, recal or "none"), []).append(abs(estimate - reference))
        held_out.append(held)
        timings[f"{lever}_replica_{held}_s"] = time.perf_counter() - t0
    timings["replica_patients"] = ",".join(held_out) or "none"
    if not errors:
        return None
    index = pd.MultiIndex.from_tuples(list(errors), names=["method", "recalibrate"])
    return pd.Series([float(np.nanmean(e)) for e in errors.values()], index=index,
                     name="patient_mae")


def run_fold(X, y, codes, patient, seed, args, say):
    """Everything of one outer fold and seed: the runs, the choice, the slides."""
    train = (X["patient"] != patient).to_numpy()
    timings = {}
    slides_train = X["slide"][train].to_numpy()
    # APP samples the size of a training patient: the size of the bags to be predicted.
    app_size = int(round(train.sum() / X["patient"][train].nunique()))
    probas, calibrations, tables = {}, {}, []
    for lever in args.levers:
        probas[lever], calibrations[lever] = _lever_predictions(X, y, codes, train, seed,
                                                                lever, args, timings)
        t1 = time.perf_counter()
        # The choice is made on the slide grouping's scores (every seed and lever has it);
        # the other groupings' runs are measured beside it.
        table = quantification_scores(calibrations[lever]["slide"], codes[train], slides_train,
                                      methods=METHODS, app_size=app_size, random_state=seed)
        table["slide_score"] = table[["bag_mae", "app_mae"]].mean(axis=1)
        replica = _patient_replica(X, y, codes, train, seed, lever, timings)
        table["patient_mae"] = np.nan if replica is None else replica
        # The mean of the errors the fold has: without an inner patient to replay (every
        # companion set lacks a class), the slide criterion alone.
        table["patient_score"] = table[["bag_mae", "app_mae", "patient_mae"]].mean(axis=1)
        tables.append(table.assign(lever=lever).set_index("lever", append=True))
        timings[f"{lever}_criterion_s"] = time.perf_counter() - t1
    table = pd.concat(tables)
    # --criterion's choice is the default; the other criterion's is a row beside it.
    other = "patient" if args.criterion == "slide" else "slide"
    table["score"] = table[f"{args.criterion}_score"]
    method, recalibrate, lever = table["score"].idxmin()
    grouping = "slide"
    other_choice = table[f"{other}_score"].idxmin()
    say(f"  {patient} seed {seed}: chose {method} ({recalibrate}) with lever {lever} "
        f"(score {table['score'].min():.3f}); " +
        ", ".join(f"{k} {v:.0f} s" if isinstance(v, float) else f"{k}: {v}"
                  for k, v in timings.items()))

    reference = _fraction(codes[~train])
    runs = []
    test_codes = codes[~train]
    for run_lever in args.levers:
        for by, p in calibrations[run_lever].items():
            for name in METHODS:
                for recal in RECALIBRATIONS:
                    if name == "cc" and recal:
                        continue  # votes do not change with a temperature
                    label = recal or "none"
                    chosen = (run_lever, by, name, label) == (lever, grouping, method, recalibrate)
                    try:
                        quantifier = PrevalenceQuantifier(name, recal).fit(p, codes[train])
                        n_boot = (args.n_bootstrap if chosen or (name == "pcc" and not recal)
                                  else args.n_bootstrap_others)
                        estimate, low, high = _estimate(quantifier, probas[run_lever], n_boot,
                                                        seed)
                    except SingularAdjustmentError:
                        estimate = low = high = float("nan")
                    runs.append({"test_patient": patient, "seed": seed, "lever": run_lever,
                                 "grouping": by, "method": name, "recalibrate": label,
                                 "estimate": estimate, "low": low, "high": high,
                                 "reference": reference,
                                 "response_right": bool((estimate >= GOOD_RESPONSE)
                                                        == (reference >= GOOD_RESPONSE))})
    default = next(dict(r) for r in runs
                   if (r["lever"], r["grouping"], r["method"], r["recalibrate"])
                   == (lever, grouping, method, recalibrate))
    default.update(method="default", chosen=f"{method} ({recalibrate}, {grouping}, {lever})")
    other_default = next(dict(r) for r in runs
                         if (r["lever"], r["grouping"], r["method"], r["recalibrate"])
                         == (other_choice[2], grouping, other_choice[0], other_choice[1]))
    other_default.update(method=f"{other} criterion", chosen="{} ({}, {}, {})".format(
        other_choice[0], other_choice[1], grouping, other_choice[2]))
    runs.append(other_default)
    # Each lever with the method its own scores choose: the levers compared on equal terms.
    for run_lever in args.levers:
        own_method, own_recal = table.xs(run_lever, level="lever")["score"].idxmin()
        best = next(dict(r) for r in runs
                    if (r["lever"], r["grouping"], r["method"], r["recalibrate"])
                    == (run_lever, grouping, own_method, own_recal))
        best.update(method="chosen", chosen=f"{own_method} ({own_recal})")
        runs.append(best)
    runs.append(default)

    # Each tumor slide of the test patient, by the chosen lever and quantifier.
    calibration = calibrations[lever][grouping]
    quantifier = PrevalenceQuantifier(method, None if recalibrate == "none" else recalibrate
                                      ).fit(calibration, codes[train])
    counts = PrevalenceQuantifier("pcc").fit(calibration, codes[train])
    proba = probas[lever]
    slides = []
    test_slides = X["slide"][~train].to_numpy()
    for slide in np.unique(test_slides):
        inside = test_slides == slide
        slide_reference = _fraction(test_codes[inside])
        if np.isnan(slide_reference):
            continue
        estimate, low, high = _estimate(quantifier, proba[inside], args.n_bootstrap_slides, seed)
        pcc = counts.necrotic_fraction(proba[inside])
        slides.append({"slide": slide, "patient": patient, "seed": seed, "estimate": estimate,
                       "low": low, "high": high, "pcc": pcc, "reference": slide_reference,
                       "n_tumor_tiles": int((test_codes[inside] > 0).sum())})
    criterion = (table.reset_index().round(4).to_dict(orient="records"))
    return runs, slides, {"test_patient": patient, "seed": seed, "grouping": grouping,
                          "lever": lever, "method": method, "recalibrate": recalibrate,
                          "other_criterion": {"criterion": other, "lever": other_choice[2],
                                              "method": other_choice[0],
                                              "recalibrate": other_choice[1]},
                          "app_size": app_size, "scores": criterion, **timings}


def summarize(runs, slides):
    """Per method: LOPO mean absolute error (mean over seeds), worst patient, responses,
    coverage and width."""
    frame = pd.DataFrame(runs)
    frame["error"] = (frame["estimate"] - frame["reference"]).abs()
    frame["covered"] = (frame["low"] <= frame["reference"]) & (frame["reference"] <= frame["high"])
    frame["width"] = frame["high"] - frame["low"]
    lever = np.where(frame["lever"] == "none", "", " [" + frame["lever"] + "]")
    plain = (frame["method"] + np.where(frame["recalibrate"] == "temperature", "+T", "")
             + " (" + frame["grouping"] + ")" + lever)
    frame["key"] = np.select(
        [frame["method"] == "default", frame["method"].str.endswith(" criterion"),
         frame["method"] == "chosen"],
        ["default", frame["method"] + "'s choice", "criterion's method [" + frame["lever"] + "]"],
        plain)
    rows = []
    for key, group in frame.groupby("key", sort=False):
        per_patient = group.groupby("test_patient")
        per_seed_mae = group.groupby("seed")["error"].mean()
        rows.append({
            "method": key,
            "mae": float(per_seed_mae.mean()),
            "mae_sd": float(per_seed_mae.std(ddof=1)) if len(per_seed_mae) > 1 else 0.0,
            "errors": {p: float(g["error"].mean()) for p, g in per_patient},
            "max_error": float(per_patient["error"].mean().max()),
            "responses_right": {p: int(g["response_right"].sum()) for p, g in per_patient},
            "n_seeds": int(group["seed"].nunique()),
            "covered": {p: float(g["covered"].mean()) for p, g in per_patient},
            "mean_width": float(group["width"].mean()) if group["width"].notna().any() else None,
        })
    slide_frame = pd.DataFrame(slides)
    slide_summary = {}
    if len(slide_frame):
        slide_frame["error"] = (slide_frame["estimate"] - slide_frame["reference"]).abs()
        slide_frame["pcc_error"] = (slide_frame["pcc"] - slide_frame["reference"]).abs()
        slide_frame["covered"] = ((slide_frame["low"] <= slide_frame["reference"])
                                  & (slide_frame["reference"] <= slide_frame["high"]))
        slide_summary = {"mae": float(slide_frame["error"].mean()),
                         "pcc_mae": float(slide_frame["pcc_error"].mean()),
                         "coverage": float(slide_frame["covered"].mean()),
                         "mean_width": float((slide_frame["high"] - slide_frame["low"]).mean()),
                         "n_slides": int(slide_frame["slide"].nunique())}
    return rows, slide_summary


def markdown(payload):
    info = payload["run"]
    lines = ["# Necrotic fraction of unseen patients: quantification (benchmarks/necrosis.py)", "",
             f"commit `{info['commit']}` ({'dirty' if info['dirty'] else 'clean tree'}); "
             f"{info['date']}; load average at start {payload['load_average_start']}; "
             f"{payload['wall_min']:.1f} min",
             "", "Leave one patient out (Case-3, Case-4, Case-48 scored), "
             f"{payload['n_seeds']} seed(s), the default pipeline; every choice by the "
             "criterion on the training patients' out-of-fold predictions. Targets: MAE <= "
             f"{TARGETS['mae']}, no patient above {TARGETS['max_error']}, response right in "
             ">= 4 of 5 seeds, interval covering >= 2 of 3 patients with mean width <= "
             f"{TARGETS['width']}.", "",
             "| method | LOPO MAE | Case-3 | Case-4 | Case-48 | responses right (of seeds) "
             "| covered | mean width |", "|---|---|---|---|---|---|---|---|"]
    for row in payload["summary"]:
        errors = row["errors"]
        right = row["responses_right"]
        covered = row["covered"]
        width = "n/a" if row["mean_width"] is None else f"{row['mean_width']:.3f}"
        lines.append(
            f"| {row['method']} | {row['mae']:.3f} ± {row['mae_sd']:.3f} | "
            + " | ".join(f"{errors.get(p, float('nan')):.3f}" for p in TEST_PATIENTS)
            + " | " + ", ".join(f"{p} {right.get(p, 0)}/{row['n_seeds']}" for p in TEST_PATIENTS)
            + " | " + ", ".join(f"{covered.get(p, 0):.1f}" for p in TEST_PATIENTS)
            + f" | {width} |")
    lines += ["", "Errors are absolute errors of the necrotic fraction, mean over seeds; "
              "'covered' is the share of seeds whose 95 % interval holds the reference.", ""]
    slides = payload["slides_summary"]
    if slides:
        lines += [f"Slides of the held-out patients ({slides['n_slides']} tumor slides): "
                  f"MAE {slides['mae']:.3f} by the chosen method, {slides['pcc_mae']:.3f} by "
                  f"the expected counts; interval coverage {slides['coverage']:.2f}, mean "
                  f"width {slides['mean_width']:.3f}.", ""]
    criterion = payload["settings"].get("criterion", "slide")
    lines += [f"Choices of the {criterion} criterion (the default) per fold, the other "
              "criterion's beside them. The slide criterion scores leave-one-slide-out bags "
              "and APP samples of the training patients' out-of-fold posteriors; the patient "
              "criterion adds the inner patient replica (each training patient with tumor "
              "estimated by a model and quantifier fitted on the others, where those hold "
              f"at least {MIN_CLASS_TILES} tiles of every class).", "",
              "| test patient | seed | lever | grouping | method | recalibrate "
              "| inner patients replayed | other criterion's choice |",
              "|---|---|---|---|---|---|---|---|"]
    for choice in payload["choices"]:
        other = choice.get("other_criterion") or {}
        lines.append(f"| {choice['test_patient']} | {choice['seed']} | "
                     f"{choice.get('lever', 'none')} | {choice['grouping']} "
                     f"| {choice['method']} | {choice['recalibrate']} "
                     f"| {choice.get('replica_patients', 'none')} "
                     f"| {other.get('criterion', '')}: {other.get('method', '')} "
                     f"({other.get('recalibrate', '')}), {other.get('lever', '')} |")
    lines += ["", "'+T': posteriors recalibrated by a temperature fitted on the calibration "
              "set. Groupings other than slide are measured on the first "
              f"{payload['settings'].get('grouping_seeds')} seed(s) only.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--patients", default=",".join(TEST_PATIENTS))
    parser.add_argument("--groupings", default="slide,tiles,patient",
                        help="calibration groupings to measure (slide, tiles, patient); the "
                             "choice is made on slide")
    parser.add_argument("--grouping-seeds", type=int, default=1,
                        help="seeds on which groupings other than slide are measured")
    parser.add_argument("--levers", default=",".join(LEVERS),
                        help=f"levers of item 4 to measure, of {list(LEVERS)}; the criterion "
                             "chooses among them as among the methods")
    parser.add_argument("--criterion", choices=("slide", "patient"), default="slide",
                        help="the criterion whose choice is the default (the other's is "
                             "reported beside it): slide, leave-one-slide-out and APP; "
                             "patient, those and the inner patient replica where a fold "
                             "allows one")
    parser.add_argument("--n-bootstrap", type=int, default=200,
                        help="bootstrap replicates of the chosen method's and pcc's interval")
    parser.add_argument("--n-bootstrap-others", type=int, default=50,
                        help="bootstrap replicates of every other method's interval")
    parser.add_argument("--n-bootstrap-slides", type=int, default=100)
    parser.add_argument("--out", default=None, help="results folder (default: the committed one)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.groupings = args.groupings.split(",")
    args.levers = args.levers.split(",")
    unknown = sorted(set(args.levers) - set(LEVERS))
    if unknown:
        parser.error(f"--levers: unknown {unknown}; expected some of {list(LEVERS)}")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    warnings.filterwarnings("ignore", category=UserWarning)
    info = run_info()
    started = time.perf_counter()
    X, y, _ = load_osteosarcoma_ut(DATA_DIR)
    codes, _ = encode_labels(y)
    runs, slides, choices = [], [], []
    for seed in range(args.seeds):
        for patient in args.patients.split(","):
            fold_runs, fold_slides, choice = run_fold(X, y, codes, patient, seed, args, say)
            runs += fold_runs
            slides += fold_slides
            choices.append(choice)
    summary, slides_summary = summarize(runs, slides)
    chosen = pd.Series([f"{c['method']} ({c['recalibrate']})" for c in choices]).value_counts()
    levers_chosen = pd.Series([c["lever"] for c in choices]).value_counts()
    payload = {"run": info, "load_average_start": info["load_average"],
               "wall_min": (time.perf_counter() - started) / 60, "n_seeds": args.seeds,
               "targets": TARGETS, "settings": {k: str(v) for k, v in vars(args).items()},
               "most_chosen_method": str(chosen.index[0]),
               "choice_counts": {str(k): int(v) for k, v in chosen.items()},
               "most_chosen_lever": str(levers_chosen.index[0]),
               "lever_counts": {str(k): int(v) for k, v in levers_chosen.items()},
               "summary": summary, "slides_summary": slides_summary,
               "choices": choices, "runs": runs, "slides": slides}
    text = markdown(payload)
    paths = write_results("necrosis", payload, text, out_dir=args.out)
    default = next(r for r in summary if r["method"] == "default")
    pcc = next((r for r in summary if r["method"] == "pcc (slide)"), None)
    say(f"most chosen: {payload['most_chosen_method']} {payload['choice_counts']}")
    say(text)
    say(f"default: LOPO MAE {default['mae']:.3f} (target <= {TARGETS['mae']}); expected "
        f"counts (pcc): {pcc['mae']:.3f}" if pcc else "")
    say("wrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
