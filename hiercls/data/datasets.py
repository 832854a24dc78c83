"""Where tiles come from: the public Osteosarcoma-UT collection, or generated stand-ins.

Both loaders return ``(X, y, groups)``: ``X`` a DataFrame with one row per tile and the
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


# --------------------------------------------------------------------------------------
# Synthetic tiles

# Optical densities (R, G, B) of one unit of stain, after Ruifrok & Johnston (2001).
_HEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])


def _check_positive_int(value, name, minimum=1):
    return check_number(value, name, integer=True, low=minimum)


def _lowpass(fields, sigma, *, sigma_across=None, angle=None):
    """Gaussian-blur each of ``fields`` (n, s, s) with its own sigma (pixels), via FFT.

    With ``sigma_across`` and ``angle`` the blur is elongated (fibres along ``angle``).
    """
    n, size, _ = fields.shape
    fy = np.fft.fftfreq(size)[None, :, None]
    fx = np.fft.rfftfreq(size)[None, None, :]
    sigma = np.asarray(sigma, dtype=float).reshape(n, 1, 1)
    if sigma_across is None:
        power = sigma ** 2 * (fy ** 2 + fx ** 2)
    else:
        across = np.asarray(sigma_across, dtype=float).reshape(n, 1, 1)
        cos, sin = np.cos(angle).reshape(n, 1, 1), np.sin(angle).reshape(n, 1, 1)
        along_f = fy * cos + fx * sin
        across_f = -fy * sin + fx * cos
        power = sigma ** 2 * along_f ** 2 + across ** 2 * across_f ** 2
    kernel = np.exp(-2.0 * np.pi ** 2 * power).astype(np.float32)
    return np.fft.irfft2(np.fft.rfft2(fields.astype(np.float32, copy=False)) * kernel, s=(size, size))


def _standardize(fields):
    centred = fields - fields.mean(axis=(1, 2), keepdims=True)
    return centred / (centred.std(axis=(1, 2), keepdims=True) + 1e-12)


def _stamp(canvas, tile_index, cy, cx, ry, rx, angle, amplitude, edge):
    """Max-paint soft ellipses onto ``canvas`` (n, s, s), all blobs at once.

    Each blob k lies on tile ``tile_index[k]`` at (``cy``, ``cx``) with radii (``ry``,
    ``rx``) turned by ``angle``, peak ``amplitude`` and a soft edge ``edge`` px wide.
    """
    if tile_index.size == 0:
        return canvas
    size = canvas.shape[1]
    half = int(np.ceil(max(ry.max(), rx.max()) + 2 * edge)) + 1
    offsets = np.arange(-half, half + 1)
    top = np.floor(cy).astype(np.int64)
    left = np.floor(cx).astype(np.int64)
    rows = top[:, None, None] + offsets[None, :, None]          # (k, w, 1)
    cols = left[:, None, None] + offsets[None, None, :]         # (k, 1, w)
    dy = rows + 0.5 - cy[:, None, None]
    dx = cols + 0.5 - cx[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dy * cos + dx * sin) / ry[:, None, None]
    v = (-dy * sin + dx * cos) / rx[:, None, None]
    radius = np.sqrt(u ** 2 + v ** 2)
    scale = np.minimum(ry, rx)[:, None, None] / edge
    value = amplitude[:, None, None] / (1.0 + np.exp(np.clip((radius - 1.0) * scale, -30, 30)))
    rows, cols = np.broadcast_arrays(rows, cols)
    value = np.broadcast_to(value, rows.shape)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size) & (value > 1e-3)
    which = np.broadcast_to(tile_index[:, None, None], rows.shape)
    np.maximum.at(canvas, (which[inside], rows[inside], cols[inside]), value[inside])
    return canvas


def _blobs(rng, counts, size, radius_range, amplitude_range, elongation_range):
    """Random blob parameters for ``counts[i]`` blobs on tile i (flat arrays)."""
    tile_index = np.repeat(np.arange(counts.size), counts)
    k = tile_index.size
    radius = rng.uniform(*radius_range, size=k)
    elongation = rng.uniform(*elongation_range, size=k)
    return {
        "tile_index": tile_index,
        "cy": rng.uniform(0, size, size=k),
        "cx": rng.uniform(0, size, size=k),
        "ry": radius * elongation,
        "rx": radius / elongation,
        "angle": rng.uniform(0, np.pi, size=k),
        "amplitude": rng.uniform(*amplitude_range, size=k),
    }


def make_synthetic_tiles(n_tiles=240, *, n_patients=4, size=64, random_state=0):
    """Generate small H&E-like tiles of the three classes, for tests and examples.

    Tiles are drawn in stain space (hematoxylin and eosin densities, turned into RGB by
    Beer-Lambert with the usual H&E stain vectors):

    - Non-Tumor: stroma with fibrous eosin, sparse small nuclei and white fat holes;
    - Non-Viable-Tumor: pale, washed-out eosin with a few faint "ghost" nuclei;
    - Viable-Tumor: dense, large, dark nuclei.

    Densities, nucleus sizes and stain amounts are random per tile and overlap between
    the classes; each patient has its own stain vectors, stain strengths and brightness
    (so a patient-level split is harder than a random one); every tile gets a random blur
    and pixel noise. A small model learns the classes well above chance but not perfectly.

    Parameters
    ----------
    n_tiles : int, default=240
        Number of tiles. Tiles are dealt to patients in turn and, within a patient, to
        the classes in turn, so classes are balanced and every patient has all three
        classes when ``n_tiles >= 3 * n_patients``.
    n_patients : int, default=4
        Number of patients.
    size : int, default=64
        Tile side in pixels (at least 16); structures scale with it.
    random_state : int, RandomState instance or None, default=0
        Seed; the same seed gives the same tiles.

    Returns
    -------
    X : pandas.DataFrame
        Columns ``image`` (object: one (size, size, 3) uint8 array per tile), ``tile``
        (``"synthetic-0000"``, ...) and ``patient``.
    y : pandas.Series
        Class codes 0, 1, 2 (int64), named ``"label"``.
    groups : pandas.Series
        ``"patient-1"``, ``"patient-2"``, ..., named ``"patient"``.

    Examples
    --------
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> X, y, groups = make_synthetic_tiles(30, n_patients=2, size=32)
    >>> X["image"].iloc[0].shape, X["image"].iloc[0].dtype.name
    ((32, 32, 3), 'uint8')
    >>> y.value_counts().sort_index().tolist(), sorted(groups.unique())
    ([10, 10, 10], ['patient-1', 'patient-2'])
    """
    n_tiles = _check_positive_int(n_tiles, "n_tiles")
    n_patients = _check_positive_int(n_patients, "n_patients")
    size = _check_positive_int(size, "size", minimum=16)
    # A Generator seeded from the scikit-learn style random_state: its normals are fast.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    scale = size / 64.0
    area = scale ** 2

    # Deal tiles to patients, then to classes within each patient; shuffle the order.
    slot = np.arange(n_tiles)
    patient = slot % n_patients
    label = (slot // n_patients) % 3
    order = rng.permutation(n_tiles)
    patient, label = patient[order], label[order]
    is_nt, is_nvt = (label == 0), (label == 1)

    # Per-patient staining: stain vectors, stain strengths and brightness.
    h_vectors = np.abs(_HEMATOXYLIN + rng.normal(0, 0.06, size=(n_patients, 3)))
    e_vectors = np.abs(_EOSIN + rng.normal(0, 0.06, size=(n_patients, 3)))
    h_vectors /= np.linalg.norm(h_vectors, axis=1, keepdims=True)
    e_vectors /= np.linalg.norm(e_vectors, axis=1, keepdims=True)
    h_gain = rng.uniform(0.7, 1.35, size=n_patients)[patient]
    e_gain = rng.uniform(0.7, 1.35, size=n_patients)[patient]
    brightness = rng.uniform(215, 250, size=n_patients)[patient]

    # Eosin: background level by class (overlapping), low-frequency texture, fibres in stroma.
    e_level = np.select([is_nt, is_nvt], [rng.uniform(0.18, 0.42, n_tiles),
                                          rng.uniform(0.10, 0.30, n_tiles)],
                        rng.uniform(0.15, 0.38, n_tiles))
    blotches = _standardize(_lowpass(rng.standard_normal((n_tiles, size, size), dtype=np.float32),
                                     rng.uniform(2.0, 5.0, n_tiles) * scale))
    fibre_angle = rng.uniform(0, np.pi, n_tiles)
    fibres = _standardize(_lowpass(rng.standard_normal((n_tiles, size, size), dtype=np.float32),
                                   rng.uniform(4.0, 8.0, n_tiles) * scale,
                                   sigma_across=np.full(n_tiles, 0.8 * scale), angle=fibre_angle))
    fibre_weight = np.where(is_nt, rng.uniform(0.15, 0.4, n_tiles), rng.uniform(0.0, 0.2, n_tiles))
    eosin = e_level[:, None, None] * (1.0 + 0.25 * blotches + fibre_weight[:, None, None] * fibres)
    hematoxylin = np.broadcast_to(rng.uniform(0.0, 0.08, n_tiles)[:, None, None],
                                  eosin.shape).copy()

    # Nuclei: how many (overlapping log-normal densities), how big, how dark.
    density = np.exp(rng.normal(0.0, 0.7, n_tiles))
    mean_count = np.select([is_nt, is_nvt], [8.0, 6.0], 20.0) * density * area
    counts = rng.poisson(mean_count)
    # (radius range at 64 px, darkness range) of the nuclei of each class.
    nucleus_look = {0: ((1.3, 3.0), (0.4, 1.0)), 1: ((1.6, 3.4), (0.12, 0.55)),
                    2: ((1.8, 4.0), (0.55, 1.3))}
    nuclei = {key: [] for key in ("tile_index", "cy", "cx", "ry", "rx", "angle", "amplitude")}
    for code, (radius, darkness) in nucleus_look.items():
        tiles_of_class = np.flatnonzero(label == code)
        found = _blobs(rng, counts[tiles_of_class], size, (radius[0] * scale, radius[1] * scale),
                       darkness, (0.75, 1.35))
        found["tile_index"] = tiles_of_class[found["tile_index"]]
        for key, parts in nuclei.items():
            parts.append(found[key])
    nuclei = {key: np.concatenate(parts) for key, parts in nuclei.items()}
    _stamp(hematoxylin, edge=0.7, **nuclei)

    # Fat holes and clefts: white, mostly in non-tumor stroma.
    hole_counts = rng.poisson(np.where(is_nt, 1.8, 0.35))
    holes = _blobs(rng, hole_counts, size, (4.0 * scale, 11.0 * scale), (0.85, 1.0), (0.8, 1.25))
    fat = _stamp(np.zeros_like(eosin), edge=1.0, **holes)
    eosin *= 1.0 - fat
    hematoxylin *= 1.0 - fat

    # Focus: a random blur per tile; then stain densities to RGB, and pixel noise.
    focus = rng.uniform(0.3, 1.3, n_tiles) * scale
    eosin = np.clip(_lowpass(eosin, focus), 0.0, None)
    hematoxylin = np.clip(_lowpass(hematoxylin, focus), 0.0, None)
    density_rgb = ((hematoxylin * h_gain[:, None, None])[..., None] * h_vectors[patient][:, None, None, :]
                   + (eosin * e_gain[:, None, None])[..., None] * e_vectors[patient][:, None, None, :])
    rgb = (brightness[:, None, None, None] * np.exp(-np.log(10.0) * density_rgb)).astype(np.float32)
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * rng.uniform(2.0, 7.0, n_tiles)[:, None, None, None]
    images = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    image_column = pd.Series([image for image in images], dtype=object)
    X = pd.DataFrame({
        IMAGE_COLUMN: image_column,
        "tile": [f"synthetic-{i:04d}" for i in range(n_tiles)],
        "patient": [f"patient-{p + 1}" for p in patient],
    })
    y = pd.Series(label.astype(np.int64), name="label")
    groups = X["patient"].rename("patient").copy()
    return X, y, groups
