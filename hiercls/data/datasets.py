"""Where tiles come from: the public Osteosarcoma-UT collection, or generated stand-ins.

The TCIA loader and its naming rules live here; the generator of synthetic tiles in
:mod:`hiercls.data.synthetic`, re-exported so that both loaders are found in one place (as
in :mod:`sklearn.datasets`). Both return ``(X, y, groups)``: ``X`` a DataFrame with one row per tile and the
tile (file path or RGB array) in its ``image`` column, ``y`` the class of each tile and
``groups`` its patient, ready for :class:`~sklearn.model_selection.GroupKFold` and
:class:`~hiercls.HierarchicalFusionClassifier`.
"""

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ..validation import check_number
from .images import IMAGE_COLUMN, MPP_COLUMN, TILE_SUFFIXES, tile_side
from .labels import CLASS_NAMES
from .synthetic import make_synthetic_tiles

__all__ = ["load_osteosarcoma_ut", "make_synthetic_tiles", "subsample_per_patient",
           "tcia_patient", "tcia_slide"]

LABEL_FILE = "PathologistValidation.csv"

# Raw labels of PathologistValidation.csv (compared case-insensitively, spaces squeezed)
# to class names. The mixed "viable: non-viable" tiles count as viable tumor, as in the
# collection's published class counts (536 / 263 / 345).
_RAW_TO_CLASS = {
    "non-tumor": CLASS_NAMES[0],
    "non-viable-tumor": CLASS_NAMES[1],
    "viable": CLASS_NAMES[2],
    "viable-tumor": CLASS_NAMES[2],
    "viable: non-viable": CLASS_NAMES[2],
}

_EXPECTED_LAYOUT = (
    "expected the collection's original layout, root/Training-Set-*/set*/ holding the "
    f"*.jpg tiles and a header-less {LABEL_FILE} (rows 'name,label') in each set folder"
)

_PATIENT = re.compile(r"^(case-\d+|[a-z]+\d*)-", re.IGNORECASE)
_SLIDE = re.compile(r"^(.+)-\d+-\d+$")


#: (mpp, tile_size) of the TCIA originals: 1024 px tiles cut "at 10x" from Aperio
#: ScanScope slides (collection description; Arunachalam et al., PLoS ONE 2019). Neither
#: source states micrometres per pixel; 1.0 um/px is the usual figure of a 10x level on
#: those scanners (0.25 um/px at 40x), so it is an assumption, not a measured value.
TCIA_ORIGINAL_RESOLUTION = (1.0, 1024)

#: (mpp, tile_size) assumed for a pipeline that declares none: the 512 px copies of the
#: TCIA originals (/work/shared's ``osteosarcoma-ut-512``), i.e. about 2.0 um/px and a
#: field of view of about 1 mm. Derived from :data:`TCIA_ORIGINAL_RESOLUTION`.
DEFAULT_RESOLUTION = (TCIA_ORIGINAL_RESOLUTION[0] * 2, TCIA_ORIGINAL_RESOLUTION[1] // 2)


def tcia_mpp(side):
    """The pixel size of a TCIA Osteosarcoma-UT tile of ``side`` pixels (any downscaled copy).

    The originals are 1024 px at :data:`TCIA_ORIGINAL_RESOLUTION`'s mpp; a copy downscaled
    to ``side`` px covers the same field of view.

    Examples
    --------
    >>> from hiercls.data.datasets import tcia_mpp
    >>> tcia_mpp(1024), tcia_mpp(512)
    (1.0, 2.0)
    """
    mpp, original = TCIA_ORIGINAL_RESOLUTION
    return mpp * original / float(side)



def _name_key(name):
    """A file name as matched between the CSV and the folder: spaces and hyphens alike."""
    return re.sub(r"[\s\-]+", "-", name.strip()).casefold()


def _label_key(raw):
    return re.sub(r"\s+", " ", raw.strip()).casefold()


def _read_label_file(path):
    """Rows of one PathologistValidation.csv as (line number, name, raw label)."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise ValueError(
                    f"{str(path)!r} line {number} is {row!r}; expected two fields 'name,label'"
                )
            # A name with a comma in it would be split: the label is the last field.
            rows.append((number, ",".join(row[:-1]).strip(), row[-1].strip()))
    return rows


def _patient_of(stem, path):
    match = _PATIENT.match(stem)
    if match is None:
        raise ValueError(
            f"cannot tell the patient of tile {str(path)!r}; expected a file name starting "
            "with the patient, like 'Case-3-...', 'Case-48-...' or 'P9-...'"
        )
    prefix = match.group(1)
    return "Case" + prefix[4:] if prefix.casefold().startswith("case-") else prefix


def _slide_of(stem, path):
    # A TCIA tile is named <slide>-<x>-<y>: the slide (``Case-4-C21``, ``Case-48-P5-C13``,
    # ``P9-B11``) is the stem without its two pixel coordinates.
    match = _SLIDE.match(stem)
    if match is None:
        raise ValueError(
            f"cannot tell the slide of tile {str(path)!r}; expected a file name "
            "'<slide>-<x>-<y>' ending in two integers, like 'Case-4-C21-29849-33988'"
        )
    return match.group(1)


def tcia_patient(tile):
    """The patient of a tile named by the TCIA Osteosarcoma-UT convention.

    Parameters
    ----------
    tile : str or path-like
        The tile's path or file name, e.g. ``.../Case-4-C21-29849-33988.jpg``.

    Returns
    -------
    str
        The leading ``Case-<n>`` (spelt ``Case``) or ``P<n>``-like prefix.

    Raises
    ------
    ValueError
        If the file name does not start with a patient.

    Examples
    --------
    >>> from hiercls.data.datasets import tcia_patient
    >>> tcia_patient("set1/Case-4-C21-29849-33988.jpg"), tcia_patient("P9-B11-1024-2048.jpg")
    ('Case-4', 'P9')
    """
    path = Path(tile)
    return _patient_of(path.stem, path)


def tcia_slide(tile):
    """The slide of a tile named by the TCIA convention ``<slide>-<x>-<y>``.

    Parameters
    ----------
    tile : str or path-like
        The tile's path or file name.

    Returns
    -------
    str
        The file name's stem without its two pixel coordinates.

    Raises
    ------
    ValueError
        If the stem does not end in two integers.

    Examples
    --------
    >>> from hiercls.data.datasets import tcia_slide
    >>> tcia_slide("set1/Case-4-C21-29849-33988.jpg"), tcia_slide("Case-48-P5-C13-10-20.jpg")
    ('Case-4-C21', 'Case-48-P5-C13')
    """
    path = Path(tile)
    return _slide_of(path.stem, path)


def _check_subsample(subsample):
    if subsample is None:
        return None
    return check_number(subsample, "subsample", integer=True, low=1,
                        expected="None or a positive int (tiles kept per patient)")


def _allocate(counts, n):
    """Split ``n`` draws over classes with ``counts`` tiles: each present class at least one
    where ``n`` allows, the rest in proportion to the counts (largest remainders)."""
    counts = np.asarray(counts, dtype=np.int64)
    present = counts > 0
    base = present.astype(np.int64) if n >= present.sum() else np.zeros_like(counts)
    spare = counts - base
    rest = n - base.sum()
    exact = rest * spare / spare.sum() if spare.sum() else np.zeros(len(counts))
    quota = np.floor(exact).astype(np.int64)
    left = rest - quota.sum()
    # Stable order: largest remainder first, ties to the larger class, then code order.
    order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - quota[k]), -counts[k], k))
    for k in order[:left]:
        quota[k] += 1
    return base + quota


def subsample_per_patient(patients, labels, n, random_state=None):
    """Rows of at most ``n`` tiles per patient, stratified by class within each patient.

    Parameters
    ----------
    patients : ndarray of shape (n_tiles,)
        Patient of each tile.
    labels : ndarray of shape (n_tiles,)
        Class name of each tile (see :data:`hiercls.CLASS_NAMES`).
    n : int
        Tiles kept per patient; a patient with fewer keeps all of them. Each class gets
        a share proportional to its count (largest remainders).
    random_state : int, RandomState or None, default=None

    Returns
    -------
    rows : ndarray of int
        Sorted row positions of the kept tiles.
    """
    rng = check_random_state(random_state)
    keep = []
    for patient in sorted(set(patients)):
        rows = np.flatnonzero(patients == patient)
        if rows.size <= n:
            keep.append(rows)
            continue
        per_class = [rows[labels[rows] == name] for name in CLASS_NAMES]
        quota = _allocate([len(r) for r in per_class], n)
        for class_rows, k in zip(per_class, quota):
            if k:
                keep.append(rng.choice(class_rows, size=k, replace=False))
    return np.sort(np.concatenate(keep))


def load_osteosarcoma_ut(root, *, subsample=None, random_state=None):
    """Load the Osteosarcoma-UT tiles and their pathologists' labels.

    Reads the public TCIA collection "Osteosarcoma data from UT Southwestern/UT Dallas
    for Viable and Necrotic Tumor Assessment" in its original layout: 1,144 H&E tiles
    (10x) of 4 patients under ``root/Training-Set-*/set*/``, each set folder with its
    tiles and a header-less ``PathologistValidation.csv`` of rows ``name,label``. Tiles
    are not read here; ``X["image"]`` holds their paths.

    The collection's quirks are handled: names in the CSV use spaces where the files use
    hyphens (``Case 48 - P5 C25-18486-7532.jpg`` is ``Case-48-P5-C25-18486-7532.jpg``);
    tiles listed more than once (always with the same label) are kept once; rows naming no
    tile of their folder (such as ``zannotated,Non-Tumor``) are ignored. The raw labels
    ``Non-Tumor``, ``Non-Viable-Tumor``, ``Viable`` and the mixed ``viable: non-viable``
    map to the classes Non-Tumor, Non-Viable-Tumor, Viable-Tumor, Viable-Tumor, which
    gives the published class counts 536 / 263 / 345.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``Training-Set-1``, ``Training-Set-2`` (tiles at their original
        1024 px or downscaled; any folders below ``root`` are searched).
    subsample : int, default=None
        Keep at most this many tiles per patient, drawn stratified by class within the
        patient (each of its classes at least once where ``subsample`` allows, the rest in
        proportion). For tests and quick runs; None keeps every tile.
    random_state : int, RandomState instance or None, default=None
        Seed of the subsample draw.

    Returns
    -------
    X : pandas.DataFrame
        One row per tile, sorted by path: ``image`` (the file path, str), ``tile`` (the
        file stem), ``patient`` (the file-name prefix: ``Case-3``, ``Case-4``,
        ``Case-48`` or ``P9``), ``slide`` (the stem without its pixel coordinates:
        ``Case-4-C21``; 41 slides, 8-13 per patient, a finer grouping than the patient)
        and ``raw_label`` (the label as written in the CSV).
        ``X.attrs["mpp"]`` states the resolution, micrometres per pixel, when all tiles
        have one size: :func:`tcia_mpp` of it (1.0 for the 1024 px
        originals, 2.0 for 512 px copies; the figure is explained at
        :data:`hiercls.features.resolution.TCIA_ORIGINAL_RESOLUTION`). It is an attribute, not a
        column, so that features and predictions stay those of tiles without one;
        :class:`~hiercls.features.resolution.TileResampler` reads it in ``fit`` and ``transform``.
    y : pandas.Series
        The class name of each tile, named ``"label"``.
    groups : pandas.Series
        The patient of each tile, named ``"patient"``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist or holds no ``PathologistValidation.csv`` or no tiles.
    ValueError
        If a tile has no label row, a tile is listed twice with different labels, a label
        is unknown, or a file name does not start with its patient.

    Notes
    -----
    Data: Leavey P, Sengupta A, Rakheja D, Daescu O, Arunachalam HB, Mishra R. Osteosarcoma
    data from UT Southwestern/UT Dallas for Viable and Necrotic Tumor Assessment. The
    Cancer Imaging Archive, 2019. https://doi.org/10.7937/tcia.2019.bvhjhdas (licence:
    CC BY 3.0 and the TCIA Data Usage Policy). See also Arunachalam HB et al., Viable and
    necrotic tumor assessment from whole slide images of osteosarcoma using
    machine-learning and deep-learning models, PLoS ONE 14(4):e0210706, 2019, and Clark K
    et al., The Cancer Imaging Archive (TCIA), J Digit Imaging 26(6):1045-1057, 2013.
    The data are not shipped with hiercls; download them from TCIA.

    Patients and classes are entangled (P9 has Non-Tumor tiles only; Case-3 has 4
    Viable-Tumor tiles, Case-48 2 Non-Viable-Tumor ones), so a patient-level test fold can
    lack whole classes; :mod:`hiercls.evaluation.metrics` copes with that.

    Examples
    --------
    >>> from hiercls.data.datasets import load_osteosarcoma_ut
    >>> X, y, groups = load_osteosarcoma_ut("osteosarcoma-ut/")  # doctest: +SKIP
    >>> y.value_counts()  # doctest: +SKIP
    label
    Non-Tumor           536
    Viable-Tumor        345
    Non-Viable-Tumor    263
    Name: count, dtype: int64
    """
    subsample = _check_subsample(subsample)
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset root {str(root)!r} does not exist; {_EXPECTED_LAYOUT}")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset root {str(root)!r} is not a folder; {_EXPECTED_LAYOUT}")
    label_files = sorted(p for p in root.rglob("*") if p.name.casefold() == LABEL_FILE.casefold()
                         and p.is_file())
    if not label_files:
        raise FileNotFoundError(f"no {LABEL_FILE} found under {str(root)!r}; {_EXPECTED_LAYOUT}")
    tiles = sorted(p for p in root.rglob("*") if p.suffix.casefold() in TILE_SUFFIXES
                   and p.is_file())
    if not tiles:
        raise FileNotFoundError(f"no tiles ({', '.join('*' + s for s in TILE_SUFFIXES)}) found "
                                f"under {str(root)!r}; {_EXPECTED_LAYOUT}")

    # Each set folder's CSV labels the tiles of that folder.
    folders = defaultdict(dict)
    for tile in tiles:
        folders[tile.parent][_name_key(tile.name)] = tile
    labels = {}   # tile path -> (raw label, csv path, line)
    for label_file in label_files:
        in_folder = folders.get(label_file.parent, {})
        for number, name, raw in _read_label_file(label_file):
            tile = in_folder.get(_name_key(name))
            if tile is None:
                continue  # a dummy row such as 'zannotated', or a tile not in this folder
            if tile in labels:
                previous, previous_file, previous_line = labels[tile]
                if _label_key(previous) != _label_key(raw):
                    raise ValueError(
                        f"tile {str(tile)!r} is labelled {previous!r} in "
                        f"{str(previous_file)!r} line {previous_line} but {raw!r} in "
                        f"{str(label_file)!r} line {number}; expected duplicate rows to agree"
                    )
                continue
            if _label_key(raw) not in _RAW_TO_CLASS:
                raise ValueError(
                    f"tile {str(tile)!r} has label {raw!r} in {str(label_file)!r} line "
                    f"{number}; expected one of 'Non-Tumor', 'Non-Viable-Tumor', 'Viable', "
                    "'viable: non-viable'"
                )
            labels[tile] = (raw, label_file, number)

    unlabelled = [tile for tile in tiles if tile not in labels]
    if unlabelled:
        more = f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""
        raise ValueError(
            f"tile {str(unlabelled[0])!r}{more} has no row in its folder's {LABEL_FILE}; "
            "expected a row 'name,label' for every tile (names may use spaces for hyphens)"
        )

    raw_labels = [labels[tile][0] for tile in tiles]
    frame = pd.DataFrame({
        IMAGE_COLUMN: [str(tile) for tile in tiles],
        "tile": [tile.stem for tile in tiles],
        "patient": [_patient_of(tile.stem, tile) for tile in tiles],
        "slide": [_slide_of(tile.stem, tile) for tile in tiles],
        "raw_label": raw_labels,
    })
    classes = np.array([_RAW_TO_CLASS[_label_key(raw)] for raw in raw_labels], dtype=object)
    if subsample is not None:
        rows = subsample_per_patient(frame["patient"].to_numpy(dtype=object), classes, subsample,
                               random_state)
        frame = frame.iloc[rows].reset_index(drop=True)
        classes = classes[rows]
    # The resolution, from the tiles' size (originals 1024 px, or downscaled copies): in
    # X.attrs, not a column, so that pipelines see the very columns (and features) as before.
    sides = {max(tile_side(path)) for path in frame[IMAGE_COLUMN]}
    if len(sides) == 1:
        frame.attrs[MPP_COLUMN] = tcia_mpp(sides.pop())
    y = pd.Series(list(classes), name="label", index=frame.index, dtype=frame["tile"].dtype)
    groups = frame["patient"].rename("patient").copy()
    return frame, y, groups
