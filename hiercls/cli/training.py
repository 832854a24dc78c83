"""The commands that train: ``demo``, ``extract`` (radiomics only), ``fit`` and ``evaluate``."""

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import CommandError
from .io import (
    _MODEL_SUFFIXES,
    _check_classes,
    _describe,
    _load_labelled_tiles,
    _load_tiles,
    _output_folder,
    _output_path,
    _print_table,
    _readable,
    _resampled,
    _save_model,
    _say,
    _skipped_file,
    _tile_slides,
)
from .model_options import _check_model_options, _make_pipeline, _radiomics_params

# --------------------------------------------------------------------------------------
# demo

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
    from ..evaluation.quantification import fit_quantifier

    by, folds = args.calibration or "slide", None
    if by == "patient":
        folds = groups.to_numpy()
    elif by == "slide":
        folds = _tile_slides(X)
        if folds is None:
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
    # The necrosis interval resamples whole slides where the tiles name theirs.
    slides = _tile_slides(X)
    cv = None if args.folds is None else GroupKFold(n_splits=args.folds)
    n_folds = n_patients if args.folds is None else args.folds
    verbose = 0 if args.quiet else 1
    pipeline = _make_pipeline(args, verbose=0, radiomics_verbose=verbose)
    say(f"hiercls evaluate: {_describe(y, groups)}; backbone {args.backbone}, up to "
        f"{args.max_epochs} epochs; {n_folds} folds"
        f"{' (leave one patient out)' if args.folds is None else ''}; the necrosis interval "
        f"resamples {_resampled(slides)}")
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Patients lack classes, so some figures are undefined on a fold: n/a in the table.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # The whole pipeline per fold, as in Python: with the feature cache (--cache, on by
        # default) the folds after the first read every tile's radiomics from it.
        result = cross_validate_by_patient(pipeline, X[["image"]], y, groups, cv=cv,
                                           verbose=verbose)
        necrosis = necrosis_from_evaluation(result, method=args.necrosis_method,
                                            random_state=args.seed, slides=slides)
    elapsed = time.perf_counter() - started

    metadata = _run_metadata(args, y, groups, n_folds, elapsed)
    # The saved predictions name each tile's file first, and its slide, for `hiercls report`.
    predictions = result.predictions.copy()
    predictions.insert(0, "image", X["image"].loc[predictions.index].to_numpy())
    if slides is not None:
        predictions.insert(1, "slide", pd.Series(slides, index=X.index).loc[predictions.index])
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
