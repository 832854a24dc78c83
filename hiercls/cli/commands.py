"""One handler per ``hiercls`` command: check the arguments, call the library, print.

``run_<command>(args)`` takes the namespace of :func:`hiercls.cli.parser.build_parser` and
returns the exit status. A problem with the inputs raises :class:`CommandError`, which
:func:`hiercls.cli.main` reports on one line with exit status 2.
"""

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import CommandError  # noqa: F401  (its home before)
from .parser import _cache

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
    from ..data.datasets import make_synthetic_tiles
    from ..estimator.pipeline import make_fusion_pipeline
    from ..evaluation.cross_validation import cross_validate_by_patient

    verbose = 0 if args.quiet else 1
    started = time.perf_counter()
    X, y, groups = make_synthetic_tiles(
        n_tiles=args.n_tiles, n_patients=args.n_patients, size=args.size, random_state=args.seed)
    pipeline = make_fusion_pipeline(
        preset="none", backbone=args.backbone, pretrained=False, image_size=args.size, embed_dim=64,
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


def _one_line(error):
    return " ".join(str(error).split())


def _load_labelled_tiles(args):
    from ..data.tables import load_labelled_tiles

    try:
        return load_labelled_tiles(args.data, subsample=args.subsample, random_state=args.seed,
                                   name="DATA")
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None


def _load_tiles(value, **kwargs):
    from ..data.tables import load_tiles

    try:
        return load_tiles(value, **kwargs)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None


def _unknown_backbone(name):
    return CommandError(f"--backbone {name!r} is not a timm model name; expected one of "
                        "timm.list_models(), e.g. efficientnet_b0 or resnet18")


def _check_model_options(args):
    """The backbone and its weights, checked by the rules of hiercls.nn.backbones."""
    from ..nn.backbones import OFFLINE_SOURCES, check_backbone_name, check_pretrained

    resolve_preset(args)
    if not args.radiomics_only:
        try:
            check_backbone_name(args.backbone)
        except ValueError:
            raise _unknown_backbone(args.backbone) from None
    weights = args.pretrained
    if isinstance(weights, str):
        try:
            # expanduser leaves the named offline source as it is.
            check_pretrained(weights if weights in OFFLINE_SOURCES
                             else str(Path(weights).expanduser()))
        except FileNotFoundError:
            raise CommandError(f"--pretrained {weights!r} is not an existing file; expected none, "
                               f"timm, {', '.join(OFFLINE_SOURCES)} or a state-dict file") from None
        except ValueError as error:
            raise CommandError(f"--pretrained {weights!r}: {_one_line(error)}") from None
    if args.patience is not None and args.patience < 0:
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


def _declared_options():
    """The classifier parameters that have an option of their own (the rest are set from
    --flat, --image-only, --patience, ... below)."""
    from ..estimator.parameters import PARAMETERS, Option

    return [p.name for p in PARAMETERS if isinstance(p.cli, Option)]


def resolve_preset(args):
    """Fill every model option left unset (None) with the ``--preset``'s value, in place.

    After it, ``args`` names the whole model (what the messages and run.json report), and
    ``args.validation`` is ``"tiles"``, ``"patients"`` or None (no early stopping).
    """
    from ..estimator.pipeline import make_fusion_pipeline
    from ..estimator.splits import GroupedValidSplit

    args.preset = getattr(args, "preset", None) or "hiercls"
    # With another --backbone, the preset's weights and input size are not its (as in
    # make_fusion_pipeline).
    backbone = getattr(args, "backbone", None)
    given = {} if not backbone else {"backbone": backbone, **{
        name: getattr(args, name) for name in ("pretrained", "freeze_backbone")
        if getattr(args, name, None) is not None}}
    if getattr(args, "radiomics_only", False):
        given["use_image"] = False
    try:
        preset = make_fusion_pipeline(preset=args.preset, **given)
    except ValueError as error:
        if "freeze_backbone=True" not in str(error):
            raise
        from ..nn.backbones import check_backbone_name

        try:  # a misspelt name is the first thing to say
            check_backbone_name(backbone)
        except ValueError:
            raise _unknown_backbone(backbone) from None
        # The same refusal as make_fusion_pipeline's, in the command line's words.
        raise CommandError(
            f"--backbone {backbone} drops the weights of --preset {args.preset} but keeps "
            "its frozen backbone, which would freeze a randomly initialized network; give "
            "--pretrained WEIGHTS for that backbone, or --no-freeze-backbone to train it "
            "whole") from None
    classifier, radiomics = preset.named_steps["classifier"], preset.named_steps["radiomics"]
    for name in _declared_options():
        if getattr(args, name, None) is None:
            setattr(args, name, classifier.get_params()[name])
    if getattr(args, "flat", None) is None:
        args.flat = not classifier.hierarchical
    for option in ("channel", "mask"):
        if getattr(args, option, None) is None:
            setattr(args, option, radiomics.get_params()[option])
    split = classifier.train_split
    args.validation = getattr(args, "validation", None)
    if getattr(args, "patience", None) is None:
        args.patience = 0 if split is None or classifier.patience is None else classifier.patience
    if args.validation is None and args.patience:
        tiles = isinstance(split, GroupedValidSplit) and split.by == "tiles"
        args.validation = "tiles" if tiles else "patients"
    if not args.patience:
        args.validation = None
    return args


def _make_pipeline(args, *, verbose, radiomics_verbose):
    from ..estimator.pipeline import make_fusion_pipeline
    from ..estimator.splits import GroupedValidSplit

    resolve_preset(args)
    pretrained = args.pretrained
    if isinstance(pretrained, str) and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
    params = {name: getattr(args, name) for name in _declared_options()}
    params.update(
        pretrained=pretrained, patience=args.patience or None, hierarchical=not args.flat,
        use_image=not args.radiomics_only, use_radiomics=not args.image_only,
        device=args.device, cache=_cache_param(args.cache), random_state=args.seed,
        verbose=verbose)
    # The split holds out whole patients only when asked to: fit always passes them.
    params["train_split"] = (None if not args.patience else GroupedValidSplit(
        0.2, by="tiles" if args.validation == "tiles" else "groups"))
    params.update({f"radiomics__{k}": v for k, v in _radiomics_params(args, radiomics_verbose).items()})
    params["resolution__mpp"] = args.mpp
    return make_fusion_pipeline(preset=args.preset, **params)


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
    from ..data.images import UnreadableTileError, check_tiles

    X = tables[0]
    try:
        check_tiles(X[["image"]], verbose=0 if args.quiet else 1)
        rows, names, reasons, error = (), (), (), None
    except UnreadableTileError as unreadable:
        rows, names, reasons = unreadable.rows, unreadable.paths, unreadable.reasons
        error = _one_line(unreadable)
    if args.skip_unreadable:
        skipped_file.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"image": list(names), "reason": list(reasons)},
                     columns=["image", "reason"]).to_csv(skipped_file, index=False)
    if not rows:
        return tables
    if not args.skip_unreadable:
        raise CommandError(f"{error}; remove or replace them, or pass --skip-unreadable "
                           "to go on without them")
    if len(rows) == len(X):
        raise CommandError(f"none of the {len(X)} tiles is readable: {error}")
    print(f"hiercls {args.command}: skipped {len(rows)} unreadable tile(s) of {len(X)}, "
          f"listed in {skipped_file}", file=sys.stderr)
    keep = np.ones(len(X), dtype=bool)
    keep[list(rows)] = False
    return tuple(table[keep].reset_index(drop=True) for table in tables)


def _skipped_file(out, folder=False):
    """Where --skip-unreadable lists the skipped tiles: beside an output file, or in a folder."""
    return out / "skipped.csv" if folder else out.with_name(out.stem + ".skipped.csv")


# --------------------------------------------------------------------------------------
# extract

def run_extract(args):
    """Radiomic features of every tile, written to CSV or Parquet."""
    from ..features.radiomics import RadiomicsTransformer

    say = _say(args)
    out = _output_path(args.out, "--out", (".csv", ".parquet"))
    if out.suffix.lower() == ".parquet":
        _check_parquet()
    X = _load_tiles(args.data, name="DATA", subsample=args.subsample, random_state=args.seed,
                    labels=True)
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

def _fit_necrosis_quantifier(args, pipeline, X, y, groups, say):
    """The quantifier saved with the model: out-of-fold probabilities of the training tiles.

    None where the default (no --calibration given) cannot make 5 folds of these tiles:
    the model is saved without one, and the message says so.
    """
    from ..data.datasets import tcia_slide
    from ..evaluation.quantification import fit_quantifier

    by, folds = args.calibration or "slide", None
    if by == "patient":
        folds = groups.to_numpy()
    elif by == "slide":
        if "slide" in X.columns:
            folds = X["slide"].to_numpy()
        else:
            try:
                folds = np.array([tcia_slide(path) for path in X["image"]], dtype=object)
            except ValueError:
                say("--calibration slide: the tiles name no slide (no slide column, not TCIA "
                    "names); calibrating on folds of tiles instead")
                by = "tiles"
    say(f"necrosis calibration: out-of-fold probabilities by {by} (5 more fits)")
    try:
        with warnings.catch_warnings():
            # scikit-learn's note that a class has fewer members than folds: the fold
            # check below says what matters, that a fold lacks a class.
            warnings.simplefilter("ignore", UserWarning)
            return fit_quantifier(pipeline, X[["image"]], y, groups=folds, by=by,
                                  random_state=args.seed, verbose=0 if args.quiet else 1)
    except ValueError as error:
        if args.calibration is None:
            print(f"hiercls fit: no necrosis quantifier saved ({error}); necrosis of this "
                  "model uses expected counts", file=sys.stderr)
            return None
        raise CommandError(f"--calibration {args.calibration}: {error}") from None


def run_fit(args):
    """Fit the fusion pipeline on all tiles and save it (.hiercls, or a joblib pickle)."""
    say = _say(args)
    out = _output_path(args.model, "--model", _MODEL_SUFFIXES)
    _check_model_options(args)
    X, y, groups = _load_labelled_tiles(args)
    _check_classes(y, "DATA")
    X, y, groups = _readable(args, (X, y, groups), _skipped_file(Path(args.model).expanduser()))
    _check_classes(y, "DATA")
    verbose = 0 if args.quiet else 1
    pipeline = _make_pipeline(args, verbose=verbose, radiomics_verbose=verbose)
    say(f"hiercls fit: {_describe(y, groups)}; backbone {args.backbone}, "
        f"up to {args.max_epochs} epochs")
    started = time.perf_counter()
    pipeline.fit(X[["image"]], y, classifier__groups=groups.to_numpy())
    if args.calibration != "none":
        quantifier = _fit_necrosis_quantifier(args, pipeline, X, y, groups, say)
        if quantifier is not None:
            pipeline.necrosis_quantifier_ = quantifier
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

    from ..evaluation.cross_validation import cross_validate_by_patient
    from ..evaluation.metrics import UndefinedMetricWarning
    from ..evaluation.necrosis import necrosis_from_evaluation
    from ..reporting.html import write_report

    say = _say(args)
    out = _output_folder(args.out, "--out")
    _check_model_options(args)
    X, y, groups = _load_labelled_tiles(args)
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
    # (Tiles declare no mpp here, so the resolution step passes them through.) A stain
    # normalizer learns from its training tiles: with one, every fold fits all steps.
    last = "resolution" if pipeline.named_steps["stain"].method is not None else "radiomics"
    prepare = pipeline[:list(pipeline.named_steps).index(last) + 1]
    features = prepare.fit_transform(X[["image"]])
    with warnings.catch_warnings():
        # Patients lack classes, so some figures are undefined on a fold: n/a in the table.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result = cross_validate_by_patient(pipeline[len(prepare):], features, y, groups, cv=cv,
                                           verbose=verbose)
        necrosis = necrosis_from_evaluation(result, method=args.necrosis_method,
                                            random_state=args.seed)
    elapsed = time.perf_counter() - started

    metadata = _run_metadata(args, y, groups, n_folds, elapsed)
    # The saved predictions name each tile's file first.
    predictions = result.predictions.copy()
    predictions.insert(0, "image", X["image"].loc[predictions.index].to_numpy())
    result = dataclasses.replace(result, predictions=predictions,
                                 metadata={"title": args.title, **metadata})
    result.save(out)
    necrosis.to_csv(out / "necrosis.csv")
    report = write_report(out, result, necrosis, title=args.title, metadata=metadata)
    _print_table(result.scores)
    say(f"wrote {out / 'metrics.csv'}, {out / 'necrosis.csv'} and {report} "
        f"({elapsed:.0f} s)")
    return 0


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
        from ..persistence import save_model

        save_model(pipeline, out)
    else:
        import joblib

        joblib.dump(pipeline, out)


def _load_model(value):
    import joblib
    from sklearn.pipeline import Pipeline

    from ..estimator.classifier import HierarchicalFusionClassifier
    from ..persistence import ModelFileError, load_model

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


def _model_columns(model, X):
    """The columns of the tiles table ``X`` that ``model`` takes, checked to be there."""
    from ..features.resolution import MPP_COLUMN, TileResampler

    first = model.steps[0][1]
    columns = list(getattr(first, "feature_names_in_", ["image"]))
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise CommandError(f"the model was fitted on the columns {columns}; TILES lacks "
                           f"{', '.join(map(repr, missing))}")
    if isinstance(first, TileResampler) and MPP_COLUMN in X.columns and MPP_COLUMN not in columns:
        columns.append(MPP_COLUMN)  # the tiles' declared resolution, for the resampler
    return columns


def _set_radiomics_options(model, args):
    """The radiomics step's progress bar (unless --quiet), --n-jobs and --cache."""
    from ..features.radiomics import RadiomicsTransformer

    radiomics = next((step for _, step in model.steps if isinstance(step, RadiomicsTransformer)),
                     None)
    if radiomics is not None:
        radiomics.set_params(verbose=0 if args.quiet else 1)
        if args.n_jobs is not None:
            radiomics.set_params(n_jobs=args.n_jobs)
        if args.cache is not None:
            radiomics.set_params(cache=_cache_param(_cache(args.cache)))


def run_predict(args):
    """Class probabilities, predicted class and gate weights of each tile."""
    from ..data.labels import CLASS_NAMES

    say = _say(args)
    out = _output_path(args.out, "--out", (".csv",))
    model = _load_model(args.model)
    X = _load_tiles(args.tiles, name="TILES")
    columns = _model_columns(model, X)
    (X,) = _readable(args, (X,), _skipped_file(out))
    _set_radiomics_options(model, args)
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
    """Re-render report.html from the saved result of an evaluate run (nothing re-scored)."""
    from ..evaluation.cross_validation import EvaluationResult
    from ..evaluation.metrics import UndefinedMetricWarning
    from ..evaluation.necrosis import necrosis_from_evaluation
    from ..reporting.html import write_report

    say = _say(args)
    source = _existing_path(args.run, "RUN", "the --out folder of 'hiercls evaluate' or its "
                                             "predictions.csv")
    folder = source if source.is_dir() else source.parent
    if source.is_dir() and not (source / "predictions.csv").is_file():
        raise CommandError(f"RUN {_quoted(source)} holds no predictions.csv; expected the --out "
                           "folder of 'hiercls evaluate'")
    try:
        result = EvaluationResult.load(source)
    except (OSError, ValueError) as error:
        raise CommandError(f"RUN {_one_line(error)}") from None
    metadata = dict(result.metadata or {})
    title = args.title or metadata.pop("title", None) or "hiercls evaluation report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        necrosis = necrosis_from_evaluation(result, method=args.necrosis_method,
                                            random_state=args.seed)
    out = folder if args.out is None else _output_folder(args.out, "--out")
    path = write_report(out, result, necrosis, title=title, metadata=metadata or None)
    _print_table(result.scores)
    say(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------
# necrosis

def _source_names(keys):
    """One group name per source (a folder or CSV, by its resolved path): its name, numbered
    where names repeat."""
    names, seen = {}, {}
    for key in keys:
        if key in names:
            continue
        stem = key.stem if key.suffix.lower() == ".csv" else key.name
        seen[stem] = seen.get(stem, 0) + 1
        names[key] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return names


def _load_tile_sources(values):
    """The tiles of every TILES argument in one table, and each tile's source (the folder or
    CSV that listed it; an image file given by itself belongs to its folder)."""
    from ..data.images import IMAGE_COLUMN, TILE_SUFFIXES

    frames, keys = [], []
    for value in values:
        path = _existing_path(value, "TILES", "a folder of tiles, a tile image or a .csv file "
                                              "with an image column")
        if path.is_file() and path.suffix.lower() in TILE_SUFFIXES:
            frame, key = pd.DataFrame({IMAGE_COLUMN: [str(path.resolve())]}), path.resolve().parent
        else:
            frame, key = _load_tiles(value, name="TILES", labels=True), path.resolve()
        if frame.empty:
            raise CommandError(f"TILES {_quoted(path)} lists no tiles; expected at least one")
        frames.append(frame)
        keys += [key] * len(frame)
    names = _source_names(keys)
    X = pd.concat(frames, ignore_index=True)
    return X, pd.Series([names[key] for key in keys], name="source")


def _tile_groups(args, X, sources):
    """Each tile's group: the --groups column, the patient or slide of its file name, or its
    source."""
    from ..data.datasets import tcia_patient, tcia_slide

    if args.groups is not None:
        if args.groups not in X.columns:
            raise CommandError(f"--groups {args.groups!r} names no column of TILES; its columns "
                               f"are {', '.join(map(repr, X.columns))}")
        values = X[args.groups]
        missing = values.isna().to_numpy()
        if missing.any():
            raise CommandError(
                f"--groups column {args.groups!r} is empty for {int(missing.sum())} of {len(X)} "
                f"tiles (the first: {X['image'][missing].iloc[0]!r}); expected a group for "
                "every tile")
        return values.astype(str).rename(args.groups).reset_index(drop=True)
    if args.by == "source":
        return sources
    of = tcia_patient if args.by == "patient" else tcia_slide
    try:
        return pd.Series([of(image) for image in X["image"]], name=args.by)
    except ValueError as error:
        raise CommandError(f"--by {args.by}: {_one_line(error)}; use --groups COLUMN with a CSV "
                           "column instead") from None


def _print_necrosis(table):
    from ..reporting.html import percent

    def interval(row):
        low, high = row["necrotic_fraction_low"], row["necrotic_fraction_high"]
        return "n/a" if not (np.isfinite(low) and np.isfinite(high)) else \
            f"{100 * low:.1f} - {100 * high:.1f} %"

    shown = pd.DataFrame({
        "tiles": table["n_tiles"],
        "tumor tiles": table["expected_tumor_tiles"].map("{:.1f}".format),
        "necrosis": table["necrotic_fraction"].map(percent),
        "interval": [interval(row) for _, row in table.iterrows()],
        "response": table["response"],
    }, index=table.index)
    if "reference_necrotic_fraction" in table.columns:
        shown["necrosis (labels)"] = table["reference_necrotic_fraction"].map(percent)
        shown["response (labels)"] = table["reference_response"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string())


def run_necrosis(args):
    """Necrotic fraction, interval and response of each group of tiles, as CSV and HTML."""
    from ..evaluation.necrosis import UncalibratedNecrosisWarning, necrosis_report
    from ..reporting.html import write_necrosis_report
    from .parser import necrosis_options

    say = _say(args)
    out = _output_folder(args.out, "--out")
    model = _load_model(args.model)
    options = necrosis_options(args)
    if options.get("members") and not hasattr(model.steps[-1][1], "predict_proba_members"):
        raise CommandError(f"--members needs a model ending in an ensemble (a SeedEnsemble); "
                           f"MODEL ends in a {type(model.steps[-1][1]).__name__}")
    X, sources = _load_tile_sources(args.tiles)
    groups = _tile_groups(args, X, sources)
    columns = _model_columns(model, X)
    X, groups = _readable(args, (X, groups), _skipped_file(out, folder=True))
    # The pathologists' reference, where every tile has a label.
    y = X["label"] if "label" in X.columns and X["label"].notna().all() else None
    _set_radiomics_options(model, args)
    say(f"hiercls necrosis: {len(X)} tiles in {groups.nunique()} group(s) by {groups.name}"
        + ("" if y is None else ", with the pathologists' labels"))
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UncalibratedNecrosisWarning)
            table = necrosis_report(model, X[columns], groups, y=y, **options)
    except ValueError as error:
        raise CommandError(_one_line(error)) from None
    for warning in caught:
        if issubclass(warning.category, UncalibratedNecrosisWarning):
            say(f"note: {warning.message} (a model saved by 'hiercls fit' with --calibration "
                "carries one)")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "necrosis.csv")
    metadata = {"model": str(Path(args.model).expanduser().resolve()),
                "tiles": ", ".join(str(Path(v).expanduser().resolve()) for v in args.tiles),
                "groups": f"column {args.groups}" if args.groups else f"by {args.by}",
                "options": ", ".join(f"{k}={v}" for k, v in options.items())}
    report = write_necrosis_report(out, table, title=args.title, metadata=metadata,
                                   threshold=options["threshold"])
    _print_necrosis(table)
    say(f"wrote {out / 'necrosis.csv'} and {report} ({time.perf_counter() - started:.0f} s)")
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
        necrosis = slides.slide_necrosis(
            tiles, name=folder, method=args.necrosis_method,
            quantifier=getattr(model, "necrosis_quantifier_", None), random_state=args.seed)
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
