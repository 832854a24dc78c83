"""What the command handlers share: reading and checking inputs, writing outputs, printing.

A problem with an input raises :class:`~hiercls.exceptions.CommandError` naming the
argument or option and what was expected.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import CommandError
from .options import _cache

# --------------------------------------------------------------------------------------
# Paths

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


def _cache_param(cache):
    """A cache folder as an absolute path, so that a saved model does not depend on the
    directory it was fitted from."""
    if cache is None or cache == "auto":
        return cache
    return str(Path(cache).expanduser().resolve())


# --------------------------------------------------------------------------------------
# Tiles

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


def _tile_slides(X):
    """Each tile's slide: the ``slide`` column, else the slide its TCIA file name names;
    None where neither says."""
    from ..data.datasets import tcia_slide

    if "slide" in X.columns and X["slide"].notna().all():
        return X["slide"].to_numpy()
    if "image" not in X.columns:
        return None
    try:
        return np.array([tcia_slide(path) for path in X["image"]], dtype=object)
    except ValueError:
        return None


def _resampled(slides, source="tiles"):
    """What a necrosis interval resamples, for the commands' messages."""
    if slides is None:
        return f"tiles (the {source} name no slide)"
    return f"whole slides ({len(set(slides))})"


def _describe(y, groups):
    from ..data.labels import CLASS_NAMES

    counts = y.value_counts()
    classes = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in CLASS_NAMES)
    return f"{len(y)} tiles of {groups.nunique()} patients ({classes})"


def _check_classes(y, name):
    if y.nunique() < 2:
        raise CommandError(f"{name} has a single class ({y.iloc[0]}); expected at least two of "
                           "Non-Tumor, Non-Viable-Tumor, Viable-Tumor")


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
# Model files

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


# --------------------------------------------------------------------------------------
# Printing

def _say(args):
    return (lambda *a, **k: None) if args.quiet else print


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


def _print_table(scores):
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(_format_summary(scores).to_string())
