"""The necrotic fraction of an unseen patient: quantification methods, nested, on the TCIA tiles.

For each outer test patient (leave one patient out over Case-3, Case-4 and Case-48, the
three with tumor; P9 has none, so there is nothing to score when it is held out, and its
fold is not run) and each seed, for each lever of the features (:data:`LEVERS`: the
default pipeline, per-patient or per-slide standardization, HED stain jitter, a patient
adversary, the radiomic features alone):

1. the lever's pipeline (``make_fusion_pipeline(random_state=seed, **lever)``) is fitted on
   the three other patients and predicts the test patient's tiles;
2. the *calibration set* is made from the training patients only: out-of-fold
   probabilities of their tiles (:func:`~hiercls.evaluation.quantification.out_of_fold_proba`,
   5 folds), by whole slides and, where ``--groupings`` asks, by tiles or patients;
3. :func:`~hiercls.evaluation.quantification.quantification_scores` scores every method on
   those out-of-fold probabilities alone: leave-one-slide-out over the training patients'
   slides (real bags with their own fractions) and the artificial prevalence protocol
   (QuaPy's APP, bags the size of a patient over the simplex), beside the trivial
   estimator (the training mix); :func:`~hiercls.evaluation.quantification.patient_shift`
   measures how far the fitted pipeline's fused embedding tells the training patients
   apart within a class;
4. the *criterion* (:func:`~hiercls.evaluation.quantification.choose_setting`) chooses the
   lever, the method and the recalibration: by default (``--criterion shift``) the lever
   with the least patient shift among those that beat the training mix on their own
   slides, then its method with the lowest score (the standardization levers are not
   offered to it: they represent a tile with its bag's statistics, so their shift says
   nothing about a new patient); ``--criterion slide`` takes the lowest
   slide score of all (the earlier criterion), whose choice is always a row beside it.
   Nothing the test patient holds enters either;
5. every method (and each choice) estimates the test patient's necrotic fraction and a 95 %
   bootstrap interval (whole slides of the bag and of the calibration set resampled, the
   adjustment refitted each time: a cluster bootstrap, since tiles of a slide are not
   independent draws), and each of the test patient's tumor slides likewise (its tiles
   resampled, the calibration set by slides);
6. after every choice, :func:`~hiercls.evaluation.quantification.rate_shift` compares the
   test patient's tiles of each class with the calibration set's rates (the chosen
   lever's, posteriors without a temperature): a diagnostic of where the label-shift
   assumption fails, recorded, never used.

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
    BASELINE,
    METHODS,
    RECALIBRATIONS,
    PrevalenceQuantifier,
    SingularAdjustmentError,
    choose_setting,
    necrotic_fraction,
    out_of_fold_proba,
    patient_shift,
    quantification_scores,
    rate_shift,
)

TEST_PATIENTS = ("Case-3", "Case-4", "Case-48")
#: Targets of the issue, printed beside the figures.
TARGETS = {"mae": 0.08, "max_error": 0.15, "coverage": 2, "width": 0.35}


def _fraction(codes):
    tumor = codes[codes > 0]
    return float(np.mean(tumor == 1)) if tumor.size else float("nan")


def _scored(estimate, low, high, reference):
    """A run's estimate beside its reference, and whether it gets the response right."""
    return {"estimate": estimate, "low": low, "high": high, "reference": reference,
            "response_right": bool((estimate >= GOOD_RESPONSE) == (reference >= GOOD_RESPONSE))}


def _estimate(quantifier, proba, n_bootstrap, seed, slides=None):
    """Point estimate and percentile interval of a bag's necrotic fraction (whole
    ``slides`` resampled where given)."""
    estimate = quantifier.necrotic_fraction(proba)
    if not n_bootstrap:
        return estimate, float("nan"), float("nan")
    replicates = necrotic_fraction(quantifier.bootstrap(proba, n_bootstrap, random_state=seed,
                                                        groups=slides))
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


#: The levers run by default: every one but per-slide standardization, which the run
#: before the shift criterion measured as the worst (benchmarks/results/necrosis.json at
#: commit e95712c: pcc's error 0.479 against 0.436 without a lever), and which would add
#: a sixth of the run's time (``--levers`` still takes it).
DEFAULT_LEVERS = tuple(lever for lever in LEVERS if lever != "standardize-slide")


def _lever_predictions(X, y, codes, train, seed, lever, args, timings):
    """The outer fit's test probabilities, its patient shift and the calibration sets of
    one lever."""
    params = LEVERS[lever]
    make = lambda: hiercls.make_fusion_pipeline(random_state=seed, verbose=0, **params)  # noqa: E731
    t0 = time.perf_counter()
    pipeline = make().fit(X[train], y[train])
    proba = pipeline.predict_proba(X[~train])
    timings[f"{lever}_outer_fit_s"] = time.perf_counter() - t0
    # The training patients' tiles in the representation the heads read: how far it
    # tells them apart within a class (the test patient's tiles take no part).
    shift = patient_shift(pipeline, X[train], codes[train], X["patient"][train].to_numpy(),
                          random_state=seed)
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
    return proba, shift, calibration


def run_fold(X, y, codes, patient, seed, args, say):
    """Everything of one outer fold and seed: the runs, the choices, the slides."""
    train = (X["patient"] != patient).to_numpy()
    timings = {}
    slides_train = X["slide"][train].to_numpy()
    # APP samples the size of a training patient: the size of the bags to be predicted.
    app_size = int(round(train.sum() / X["patient"][train].nunique()))
    probas, calibrations, tables, shifts = {}, {}, {}, {}
    for lever in args.levers:
        probas[lever], shifts[lever], calibrations[lever] = _lever_predictions(
            X, y, codes, train, seed, lever, args, timings)
        t1 = time.perf_counter()
        # The choice is made on the slide grouping's scores (every seed and lever has it);
        # the other groupings' runs are measured beside it.
        tables[lever] = quantification_scores(calibrations[lever]["slide"], codes[train],
                                              slides_train, methods=METHODS,
                                              app_size=app_size, random_state=seed)
        timings[f"{lever}_criterion_s"] = time.perf_counter() - t1
    # --criterion's choice is the default; the other criterion's is a row beside it.
    # A lever that standardizes each patient (slide) with its own tiles' statistics makes a
    # tile's representation depend on its bag's class mix, the quantity being estimated:
    # its shift is measured and reported, but it is not offered to the shift criterion.
    comparable = {lever: value for lever, value in shifts.items()
                  if "standardize_by" not in LEVERS[lever]}
    choices = {"slide": choose_setting(tables), "shift": choose_setting(tables, comparable)}
    other = "slide" if args.criterion == "shift" else "shift"
    lever, method, recalibrate = choices[args.criterion]
    grouping = "slide"
    say(f"  {patient} seed {seed}: chose {method} ({recalibrate}) with lever {lever}; "
        "patient shift " + ", ".join(f"{k} {v:.3f}" for k, v in shifts.items()) + "; "
        + ", ".join(f"{k} {v:.0f} s" if isinstance(v, float) else f"{k}: {v}"
                    for k, v in timings.items()))

    reference = _fraction(codes[~train])
    runs = []
    test_codes = codes[~train]
    test_slides = X["slide"][~train].to_numpy()
    for run_lever in args.levers:
        for by, p in calibrations[run_lever].items():
            for name in METHODS:
                for recal in RECALIBRATIONS:
                    if name == "cc" and recal:
                        continue  # votes do not change with a temperature
                    label = recal or "none"
                    chosen = (run_lever, by, name, label) == (lever, grouping, method, recalibrate)
                    try:
                        quantifier = PrevalenceQuantifier(name, recal).fit(
                            p, codes[train], groups=slides_train)
                        n_boot = (args.n_bootstrap if chosen or (name == "pcc" and not recal)
                                  else args.n_bootstrap_others)
                        estimate, low, high = _estimate(quantifier, probas[run_lever], n_boot,
                                                        seed, slides=test_slides)
                    except SingularAdjustmentError:
                        estimate = low = high = float("nan")
                    runs.append({"test_patient": patient, "seed": seed, "lever": run_lever,
                                 "grouping": by, "method": name, "recalibrate": label,
                                 **_scored(estimate, low, high, reference)})
    # The trivial estimator: the training patients' mix, whatever the bag (and the lever).
    runs.append({"test_patient": patient, "seed": seed, "lever": args.levers[0],
                 "grouping": "slide", "method": BASELINE, "recalibrate": "none",
                 **_scored(_fraction(codes[train]), float("nan"), float("nan"), reference)})

    def run_of(choice, label, chosen):
        """A copy of the run of (lever, method, recalibrate), relabelled."""
        row = next(dict(r) for r in runs
                   if (r["lever"], r["grouping"], r["method"], r["recalibrate"])
                   == (choice[0], grouping, choice[1], choice[2]))
        return {**row, "method": label, "chosen": chosen}

    runs.append(run_of(choices[other], f"{other} criterion",
                       "{1} ({2}, slide, {0})".format(*choices[other])))
    # Each lever with the method its own scores choose: the levers compared on equal terms.
    for run_lever in args.levers:
        own = choose_setting({run_lever: tables[run_lever]})
        runs.append(run_of(own, "chosen", f"{own[1]} ({own[2]})"))
    runs.append(run_of(choices[args.criterion], "default",
                       f"{method} ({recalibrate}, {grouping}, {lever})"))

    # Each tumor slide of the test patient, by the chosen lever and quantifier.
    calibration = calibrations[lever][grouping]
    quantifier = PrevalenceQuantifier(method, None if recalibrate == "none" else recalibrate
                                      ).fit(calibration, codes[train], groups=slides_train)
    counts = PrevalenceQuantifier("pcc").fit(calibration, codes[train])
    proba = probas[lever]
    slides = []
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
    # A diagnostic read after every choice is made: how far the test patient's tiles of
    # each class depart from the calibration set's rates (the label-shift assumption an
    # adjustment rests on). On the posteriors as the classifier gives them (the counts'
    # quantifier has no temperature), so that seeds with and without one average alike.
    rates = rate_shift(counts, proba, test_codes)
    scores = pd.concat(tables, names=["lever"]).reset_index()
    other_lever, other_method, other_recalibrate = choices[other]
    return runs, slides, {"test_patient": patient, "seed": seed, "grouping": grouping,
                          "criterion": args.criterion, "lever": lever, "method": method,
                          "recalibrate": recalibrate,
                          "other_criterion": {"criterion": other, "lever": other_lever,
                                              "method": other_method,
                                              "recalibrate": other_recalibrate},
                          "patient_shift": {k: round(v, 4) for k, v in shifts.items()},
                          "app_size": app_size, "scores": scores.round(4).to_dict(orient="records"),
                          "rate_shift": rates.round(4).to_dict(orient="records"),
                          **timings}


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
            # The coverage target counts patients per seed: seeds whose interval holds the
            # reference for at least TARGETS["coverage"] of the scored patients.
            "seeds_covering": int((group.groupby("seed")["covered"].sum()
                                   >= TARGETS["coverage"]).sum()),
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


def summarize_rate_shift(choices):
    """Per test patient, true class and class of the posterior: the rates of
    :func:`~hiercls.evaluation.quantification.rate_shift`, mean over seeds (records)."""
    records = [{**row, "test_patient": c["test_patient"]} for c in choices
               for row in c.get("rate_shift", [])]
    if not records:
        return []
    table = (pd.DataFrame(records)
             .groupby(["test_patient", "true_class", "posterior_class"], sort=False)
             [["calibration", "bag", "difference", "n_tiles"]].mean().reset_index())
    return table.round(4).to_dict(orient="records")


def rate_shift_lines(summary):
    """The held-out patients' rates beside the calibration sets' ones, as a table."""
    if not summary:
        return []
    short = {"Non-Tumor": "NT", "Non-Viable-Tumor": "NV", "Viable-Tumor": "V"}
    lines = ["Where the label-shift assumption breaks (a diagnostic, read after every choice "
             "is made): the mean posterior of each class over the held-out patient's tiles "
             "of each true class, beside the same rates on its calibration set (the training "
             "patients' out-of-fold tiles of the chosen lever; posteriors without a "
             "temperature), mean over seeds. Every adjustment assumes the two agree.", "",
             "| test patient | true class | held-out tiles | calibration NT / NV / V "
             "| held out NT / NV / V |", "|---|---|---|---|---|"]
    table = pd.DataFrame(summary)
    for (patient, true), rows in table.groupby(["test_patient", "true_class"], sort=False):
        n_tiles = int(rows["n_tiles"].iloc[0])
        held_out = " / ".join(f"{v:.2f}" for v in rows["bag"]) if n_tiles else "n/a"
        lines.append(f"| {patient} | {short[true]} | {n_tiles} | "
                     + " / ".join(f"{v:.2f}" for v in rows["calibration"])
                     + f" | {held_out} |")
    return lines + [""]


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
    default = next((row for row in payload["summary"] if row["method"] == "default"), None)
    if default is not None:
        lines += [f"The default's interval holds the reference for at least "
                  f"{TARGETS['coverage']} of the 3 patients in {default['seeds_covering']} of "
                  f"{default['n_seeds']} seeds.", ""]
    slides = payload["slides_summary"]
    if slides:
        lines += [f"Slides of the held-out patients ({slides['n_slides']} tumor slides): "
                  f"MAE {slides['mae']:.3f} by the chosen method, {slides['pcc_mae']:.3f} by "
                  f"the expected counts; interval coverage {slides['coverage']:.2f}, mean "
                  f"width {slides['mean_width']:.3f}.", ""]
    lines += rate_shift_lines(payload.get("rate_shift_summary"))
    criterion = payload["settings"].get("criterion", "shift")
    levers = list(payload["choices"][0]["patient_shift"]) if payload["choices"] else []
    lines += [f"Choices of the {criterion} criterion (the default) per fold, the other "
              "criterion's beside them, and each lever's patient shift (mean within-class "
              "AUC of telling the training patients apart from the fused embedding; 0.5: "
              "not at all). The slide criterion takes the lowest score (leave-one-slide-out "
              "bags and APP samples of the training patients' out-of-fold posteriors) of "
              "every lever and method; the shift criterion takes, among the levers whose "
              "best method beats the training mix on those bags, the one with the least "
              "patient shift, then its method with the lowest score (the standardization "
              "levers, which represent a tile with its bag's statistics, are not offered "
              "to it).", "",
              "| test patient | seed | lever | method | recalibrate | other criterion's "
              "choice | " + " | ".join(f"shift {lever}" for lever in levers) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(levers)]
    for choice in payload["choices"]:
        other = choice["other_criterion"]
        shift = choice["patient_shift"]
        lines.append(f"| {choice['test_patient']} | {choice['seed']} | {choice['lever']} "
                     f"| {choice['method']} | {choice['recalibrate']} "
                     f"| {other['criterion']}: {other['method']} ({other['recalibrate']}), "
                     f"{other['lever']} | "
                     + " | ".join(f"{shift[lever]:.3f}" for lever in levers) + " |")
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
    parser.add_argument("--levers", default=",".join(DEFAULT_LEVERS),
                        help=f"levers of the features to measure, of {list(LEVERS)}; the criterion "
                             "chooses among them as among the methods")
    parser.add_argument("--criterion", choices=("shift", "slide"), default="shift",
                        help="the criterion whose choice is the default (the other's is "
                             "reported beside it): shift, the least patient shift among the "
                             "levers that beat the training mix, then the best method; "
                             "slide, the lowest leave-one-slide-out and APP score of all")
    parser.add_argument("--n-bootstrap", type=int, default=200,
                        help="bootstrap replicates of the chosen method's and pcc's interval")
    parser.add_argument("--n-bootstrap-others", type=int, default=30,
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
               "rate_shift_summary": summarize_rate_shift(choices),
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
