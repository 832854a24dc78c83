"""The commands that use a saved model or a saved run: ``predict``, ``report``, ``necrosis``, ``slide``."""

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import CommandError
from .io import (
    _cache_param,
    _existing_path,
    _load_model,
    _load_tile_sources,
    _load_tiles,
    _model_columns,
    _one_line,
    _output_folder,
    _output_path,
    _print_table,
    _quoted,
    _readable,
    _resampled,
    _say,
    _set_radiomics_options,
    _skipped_file,
    _tile_slides,
)
from .options import _cache

# --------------------------------------------------------------------------------------
# predict

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
    # Runs saved by `hiercls evaluate` name each tile's slide (or file): resample slides.
    slides = _tile_slides(result.predictions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        necrosis = necrosis_from_evaluation(result, method=args.necrosis_method,
                                            random_state=args.seed, slides=slides)
    out = folder if args.out is None else _output_folder(args.out, "--out")
    path = write_report(out, result, necrosis, title=title, metadata=metadata or None)
    _print_table(result.scores)
    say(f"wrote {path}; the necrosis interval resamples {_resampled(slides, 'predictions')}")
    return 0


# --------------------------------------------------------------------------------------
# necrosis

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
    from .options import necrosis_options

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
    # The interval resamples whole slides where the tiles name theirs.
    slides = _tile_slides(X)
    say(f"hiercls necrosis: {len(X)} tiles in {groups.nunique()} group(s) by {groups.name}"
        + ("" if y is None else ", with the pathologists' labels")
        + f"; the interval resamples {_resampled(slides)}")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UncalibratedNecrosisWarning)
            table = necrosis_report(model, X[columns], groups, y=y, slides=slides,
                                    **options)
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
