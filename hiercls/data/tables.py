"""Tiles listed in a CSV file or found in a folder, as the DataFrames the estimators take.

:func:`load_labelled_tiles` reads tiles with labels and patients (for fitting and
evaluation) from a folder in the TCIA Osteosarcoma-UT layout or from a CSV;
:func:`load_tiles` reads tiles to predict, from any folder of images or a CSV with an
``image`` column. Relative paths in a CSV are resolved against the CSV's folder, and every
listed file must exist. A problem with the input raises ``FileNotFoundError`` (a path that
does not exist) or ``ValueError`` (a file of the wrong kind, a missing column or value), with
a one-line message that starts with the input's ``name``.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .images import IMAGE_COLUMN, TILE_SUFFIXES
from .labels import CLASS_NAMES, encode_labels

__all__ = [
    "CSV_COLUMNS",
    "LABELLED_TILES",
    "class_names",
    "is_tcia_folder",
    "load_labelled_tiles",
    "load_tiles",
    "read_tile_csv",
    "subsample_tiles",
]

#: Columns of a labelled tiles CSV.
CSV_COLUMNS = (IMAGE_COLUMN, "label", "patient")

#: What :func:`load_labelled_tiles` accepts, in the words of its error messages.
LABELLED_TILES = (
    "a dataset folder in the TCIA Osteosarcoma-UT layout (Training-Set-*/set*/ with "
    "PathologistValidation.csv), or a .csv file with columns image (tile paths, relative "
    "ones resolved against the CSV's folder), label (0/1/2 or the class names) and patient"
)

_READ_ERRORS = (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError)


def _quoted(path):
    return repr(str(path))


def _one_line(error):
    return " ".join(str(error).split())


def _existing_path(value, name, expected):
    path = Path(value).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name} {_quoted(path)} does not exist; expected {expected}")
    return path


def read_tile_csv(path, required=CSV_COLUMNS, *, name="CSV"):
    """A CSV of tiles, with the ``required`` columns filled in on every row.

    Parameters
    ----------
    path : str or path-like
        The CSV file. Its ``image`` column holds tile paths; relative ones are resolved
        against the CSV's folder.
    required : sequence of str, default=CSV_COLUMNS
        Columns that must be present with a value on every row; ``image`` among them.
    name : str, default="CSV"
        How error messages name the input (e.g. a command's argument, ``"DATA"``).

    Returns
    -------
    table : DataFrame
        The CSV's columns (``image`` and ``patient`` as text), ``image`` replaced by
        absolute paths.

    Raises
    ------
    ValueError
        If the file is not a readable CSV, lacks a required column (named in the
        message with the columns found), has no rows, a row without a required value, or
        lists an image file that does not exist (its line is named).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (8, 8)).save(folder / "a.png")
    >>> pd.DataFrame({"image": ["a.png"]}).to_csv(folder / "tiles.csv", index=False)
    >>> table = read_tile_csv(folder / "tiles.csv", ("image",))
    >>> Path(table["image"][0]) == (folder / "a.png").resolve()
    True
    """
    path = Path(path).expanduser()
    try:
        table = pd.read_csv(path, dtype={IMAGE_COLUMN: str, "patient": str})
    except _READ_ERRORS as error:
        raise ValueError(f"{name} {_quoted(path)} is not a readable CSV file: "
                         f"{_one_line(error)}") from None
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(
            f"{name} {_quoted(path)} lacks the column(s) {', '.join(map(repr, missing))}; "
            f"expected the columns {', '.join(required)} (found: {', '.join(map(str, table.columns))})"
        )
    if table.empty:
        raise ValueError(f"{name} {_quoted(path)} has no rows; expected one row per tile")
    for column in required:
        empty = np.flatnonzero(table[column].isna().to_numpy())
        if empty.size:
            # Line 1 is the header.
            raise ValueError(f"{name} {_quoted(path)} line {empty[0] + 2} has no {column!r}; "
                             f"expected a value on every row")
    base = path.resolve().parent
    resolved = [str(p if p.is_absolute() else base / p)
                for p in (Path(value).expanduser() for value in table[IMAGE_COLUMN])]
    absent = [k for k, image in enumerate(resolved) if not Path(image).is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise ValueError(
            f"{name} {_quoted(path)} line {absent[0] + 2}: image "
            f"{table[IMAGE_COLUMN].iloc[absent[0]]!r} not found at {resolved[absent[0]]!r}{more}; "
            "relative paths are resolved against the CSV's folder"
        )
    table[IMAGE_COLUMN] = resolved
    return table


def class_names(labels, name="labels"):
    """Labels given as codes (0, 1, 2) or class names, as class names.

    Parameters
    ----------
    labels : Series
    name : str, default="labels"
        How an error message names the labels.

    Returns
    -------
    names : Series of class names named ``"label"``, indexed like ``labels``.

    Raises
    ------
    ValueError
        For a label that is neither a code nor a class name.

    Examples
    --------
    >>> import pandas as pd
    >>> class_names(pd.Series([0, 2])).tolist()
    ['Non-Tumor', 'Viable-Tumor']
    """
    codes, _ = encode_labels(labels, name=name)
    return pd.Series(np.asarray(CLASS_NAMES, dtype=object)[codes], index=labels.index,
                     name="label")


def subsample_tiles(table, n, random_state=0):
    """At most ``n`` rows per patient, drawn stratified by class when labels are known.

    Parameters
    ----------
    table : DataFrame
        Tiles; its ``patient`` and ``label`` columns are used where present (without
        ``patient`` all rows count as one patient).
    n : int or None
        Rows kept per patient; None keeps the table as it is.
    random_state : int, default=0

    Returns
    -------
    table : DataFrame
        The kept rows, indexed from 0 (the same object when ``n`` is None).

    See Also
    --------
    hiercls.data.datasets.subsample_per_patient : the draw itself.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"image": list("abcdef"), "patient": list("ppppqq")})
    >>> subsample_tiles(table, 1)["patient"].tolist()
    ['p', 'q']
    """
    from .datasets import subsample_per_patient

    if n is None:
        return table
    patients = (table["patient"].to_numpy(dtype=object) if "patient" in table.columns
                else np.zeros(len(table), dtype=object))
    labels = (table["label"].to_numpy(dtype=object) if "label" in table.columns
              else np.full(len(table), CLASS_NAMES[0], dtype=object))
    rows = subsample_per_patient(patients, labels, n, random_state)
    return table.iloc[rows].reset_index(drop=True)


def is_tcia_folder(path):
    """Whether a folder holds a ``PathologistValidation.csv`` (the TCIA layout) anywhere.

    Examples
    --------
    >>> import tempfile
    >>> is_tcia_folder(tempfile.mkdtemp())
    False
    """
    from .datasets import LABEL_FILE

    return any(p.name.casefold() == LABEL_FILE.casefold() for p in Path(path).rglob("*"))


def load_labelled_tiles(source, *, subsample=None, random_state=0, name="DATA"):
    """Tiles with labels and patients from a TCIA folder or a CSV.

    Parameters
    ----------
    source : str or path-like
        A folder in the TCIA Osteosarcoma-UT layout (read by
        :func:`~hiercls.data.datasets.load_osteosarcoma_ut`), or a ``.csv`` file with the
        columns :data:`CSV_COLUMNS` (image, label as code or class name, patient).
    subsample : int or None, default=None
        Keep at most this many tiles per patient, stratified by class.
    random_state : int, default=0
        Seed of the subsample.
    name : str, default="DATA"
        How error messages name ``source``.

    Returns
    -------
    X : DataFrame
        An ``image`` column of absolute file paths, and the CSV's other columns (from a
        folder: ``tile``, ``patient`` and ``raw_label``).
    y : Series of class names, named ``"label"``
    groups : Series of patients as text, named ``"patient"``

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    ValueError
        If it is neither a folder nor a CSV, or its contents are not as expected.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from PIL import Image
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> folder = Path(tempfile.mkdtemp())
    >>> tiles, labels, patients = make_synthetic_tiles(n_tiles=6, n_patients=2, size=16)
    >>> for k, image in enumerate(tiles["image"]):
    ...     Image.fromarray(image).save(folder / f"tile-{k}.png")
    >>> pd.DataFrame({"image": [f"tile-{k}.png" for k in range(6)], "label": labels,
    ...               "patient": patients}).to_csv(folder / "tiles.csv", index=False)
    >>> X, y, groups = load_labelled_tiles(folder / "tiles.csv")
    >>> list(X.columns), len(y), groups.nunique()
    (['image'], 6, 2)
    """
    from .datasets import load_osteosarcoma_ut

    path = _existing_path(source, name, LABELLED_TILES)
    if path.is_dir():
        try:
            X, y, groups = load_osteosarcoma_ut(path, subsample=subsample,
                                                random_state=random_state)
        except OSError as error:
            raise FileNotFoundError(f"{name}: {_one_line(error)}") from None
        except ValueError as error:
            raise ValueError(f"{name}: {_one_line(error)}") from None
        return X, class_names(y, "the labels"), groups.astype(str).rename("patient")
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{name} {_quoted(path)} is neither a folder nor a .csv file; "
                         f"expected {LABELLED_TILES}")
    table = read_tile_csv(path, CSV_COLUMNS, name=name)
    table["label"] = class_names(table["label"], f"column 'label' of {str(path)!r}")
    table = subsample_tiles(table, subsample, random_state)
    y = table.pop("label")
    groups = table["patient"].astype(str).rename("patient")
    return table.drop(columns="patient"), y, groups


def load_tiles(source, *, name="TILES", subsample=None, random_state=0, labels=False):
    """Tiles from a folder (searched recursively for images) or a CSV with an image column.

    Parameters
    ----------
    source : str or path-like
        A folder, searched recursively for files ending in one of
        :data:`hiercls.data.images.TILE_SUFFIXES` (case-insensitive), or a ``.csv`` file
        with an ``image`` column (other columns kept; a complete ``label`` column is
        turned into class names).
    name : str, default="TILES"
        How error messages name ``source``.
    subsample : int or None, default=None
        Keep at most this many tiles per patient (all tiles of a folder count as one).
    random_state : int, default=0
        Seed of the subsample.
    labels : bool, default=False
        Read a folder in the TCIA layout with its labels and patients (columns ``label``
        and ``patient`` added, as by :func:`load_labelled_tiles`).

    Returns
    -------
    X : DataFrame with an ``image`` column of absolute file paths (a folder's sorted).

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    ValueError
        If it is neither a folder nor a CSV, a folder holds no images, or the CSV is not
        as expected.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> folder = Path(tempfile.mkdtemp())
    >>> tiles, _, _ = make_synthetic_tiles(n_tiles=3, n_patients=1, size=16)
    >>> for k, image in enumerate(tiles["image"]):
    ...     (folder / f"set{k}").mkdir()
    ...     Image.fromarray(image).save(folder / f"set{k}" / "tile.png")
    >>> [Path(p).parent.name for p in load_tiles(folder)["image"]]
    ['set0', 'set1', 'set2']
    """
    expected = (f"a folder of tiles ({', '.join('*' + s for s in TILE_SUFFIXES)}, searched "
                "recursively) or a .csv file with an image column")
    path = _existing_path(source, name, expected)
    if path.is_dir():
        if labels and is_tcia_folder(path):
            X, y, groups = load_labelled_tiles(path, subsample=subsample,
                                               random_state=random_state, name=name)
            return X.assign(patient=groups, label=y)
        files = sorted(p for p in path.resolve().rglob("*")
                       if p.suffix.lower() in TILE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"{name} {_quoted(path)} holds no image files; expected {expected}")
        return subsample_tiles(pd.DataFrame({IMAGE_COLUMN: [str(p) for p in files]}), subsample,
                               random_state)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{name} {_quoted(path)} is neither a folder nor a .csv file; "
                         f"expected {expected}")
    table = read_tile_csv(path, (IMAGE_COLUMN,), name=name)
    if "label" in table.columns and table["label"].notna().all():
        table["label"] = class_names(table["label"], f"column 'label' of {str(path)!r}")
    return subsample_tiles(table, subsample, random_state)
