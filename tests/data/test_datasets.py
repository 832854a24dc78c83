import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hiercls.data.datasets import load_osteosarcoma_ut, make_synthetic_tiles
from hiercls.data.labels import CLASS_NAMES


def _data_dir():
    configured = os.environ.get("HIERCLS_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "osteosarcoma-ut-512"


DATA_DIR = _data_dir()
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "Training-Set-1").is_dir(),
    reason=f"Osteosarcoma-UT tiles not found at {DATA_DIR} (set HIERCLS_DATA_DIR to the "
           "folder holding Training-Set-1 and Training-Set-2)",
)

# Per-patient class counts of the collection (README of the data folder).
PUBLISHED_COUNTS = {
    "Case-3": (110, 171, 4),
    "Case-4": (78, 90, 109),
    "Case-48": (136, 2, 232),
    "P9": (212, 0, 0),
}


# --- synthetic tiles ------------------------------------------------------------------

def test_synthetic_shapes_and_dtypes():
    X, y, groups = make_synthetic_tiles(60, n_patients=3, size=32, random_state=1)
    assert list(X.columns) == ["image", "tile", "patient"]
    assert X["image"].dtype == object and len(X) == 60
    for image in X["image"]:
        assert isinstance(image, np.ndarray)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert y.name == "label" and y.dtype == np.int64 and set(y) == {0, 1, 2}
    assert groups.name == "patient"
    assert sorted(groups.unique()) == ["patient-1", "patient-2", "patient-3"]
    assert (groups.to_numpy() == X["patient"].to_numpy()).all()
    assert X.index.equals(y.index) and y.index.equals(groups.index)


def test_synthetic_is_deterministic():
    a = make_synthetic_tiles(30, random_state=5)
    b = make_synthetic_tiles(30, random_state=5)
    c = make_synthetic_tiles(30, random_state=6)
    assert all(np.array_equal(p, q) for p, q in zip(a[0]["image"], b[0]["image"]))
    assert a[1].equals(b[1]) and a[2].equals(b[2])
    assert not all(np.array_equal(p, q) for p, q in zip(a[0]["image"], c[0]["image"]))


def test_synthetic_classes_balanced_and_in_every_patient():
    _, y, groups = make_synthetic_tiles(240, n_patients=4)
    assert y.value_counts().to_dict() == {0: 80, 1: 80, 2: 80}
    table = pd.crosstab(groups, y)
    assert table.shape == (4, 3) and (table.to_numpy() == 20).all()
    # Uneven sizes still give every patient all classes.
    _, y_small, groups_small = make_synthetic_tiles(25, n_patients=4)
    assert (pd.crosstab(groups_small, y_small).to_numpy() > 0).all()


def test_synthetic_tiny_and_bad_input():
    X, _, _ = make_synthetic_tiles(1, n_patients=1, size=16)
    assert len(X) == 1 and X["image"].iloc[0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="n_tiles"):
        make_synthetic_tiles(0)
    with pytest.raises(ValueError, match="size"):
        make_synthetic_tiles(10, size=8)
    with pytest.raises(ValueError, match="n_patients"):
        make_synthetic_tiles(10, n_patients=1.5)


def test_synthetic_is_fast():
    make_synthetic_tiles(12)
    start = time.perf_counter()
    make_synthetic_tiles(240, size=64)
    assert time.perf_counter() - start < 3.0  # typically ~0.4 s; generous for slow CI


def _color_features(X):
    pixels = np.stack(X["image"].to_list()).reshape(len(X), -1, 3).astype(float)
    histograms = [
        np.stack([np.histogram(tile[:, c], bins=6, range=(0, 256))[0] for tile in pixels])
        for c in range(3)
    ]
    return np.hstack([pixels.mean(axis=1), pixels.std(axis=1)] + histograms)


def test_synthetic_is_learnable_but_not_trivial():
    X, y, groups = make_synthetic_tiles(240, n_patients=4, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    scores = cross_val_score(model, _color_features(X), y, groups=groups, cv=GroupKFold(4))
    assert 0.5 < scores.mean() < 0.97, scores


# --- the real collection ------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    return load_osteosarcoma_ut(DATA_DIR)


@needs_data
def test_real_counts_and_columns(real):
    X, y, groups = real
    assert len(X) == 1144
    assert list(X.columns) == ["image", "tile", "patient", "slide", "raw_label"]
    assert y.name == "label" and groups.name == "patient"
    assert set(y) == set(CLASS_NAMES)
    table = pd.crosstab(groups, y).reindex(columns=list(CLASS_NAMES), fill_value=0)
    assert {p: tuple(int(v) for v in row) for p, row in table.iterrows()} == PUBLISHED_COUNTS
    assert y.value_counts().to_dict() == dict(zip(CLASS_NAMES, (536, 263, 345)))
    assert X["raw_label"].value_counts().to_dict() == {
        "Non-Tumor": 536, "Viable": 292, "Non-Viable-Tumor": 263, "viable: non-viable": 53}
    assert X["image"].is_monotonic_increasing
    assert all(Path(p).is_file() for p in X["image"].iloc[::100])
    assert (X["tile"] == [Path(p).stem for p in X["image"]]).all()
    # 41 slides, 8-13 per patient, each within one patient.
    per_patient = X.groupby("patient")["slide"].nunique()
    assert X["slide"].nunique() == 41 and per_patient.between(8, 13).all()
    assert (X.groupby("slide")["patient"].nunique() == 1).all()


@needs_data
def test_real_labels_match_manifest(real):
    X, y, groups = real
    manifest_path = DATA_DIR / "manifest.csv"
    if not manifest_path.is_file():
        pytest.skip(f"no manifest.csv in {DATA_DIR}")
    manifest = pd.read_csv(manifest_path).sort_values("path").reset_index(drop=True)
    relative = [Path(p).relative_to(DATA_DIR).as_posix() for p in X["image"]]
    assert relative == manifest["path"].tolist()
    assert y.tolist() == manifest["label"].tolist()
    assert X["raw_label"].tolist() == manifest["raw_label"].tolist()
    assert groups.tolist() == manifest["patient"].tolist()
    assert X["tile"].tolist() == manifest["tile"].tolist()


@needs_data
def test_real_subsample(real):
    X_all, y_all, groups_all = real
    X, y, groups = load_osteosarcoma_ut(DATA_DIR, subsample=20, random_state=0)
    assert groups.value_counts().to_dict() == {p: 20 for p in PUBLISHED_COUNTS}
    # Stratified within patient: every class the patient has is kept.
    for patient, sub in y.groupby(groups):
        assert set(sub) == set(y_all[groups_all == patient])
    assert X["image"].is_monotonic_increasing and X.index.equals(pd.RangeIndex(len(X)))
    # A subsample is a subset with the same labels.
    labels = dict(zip(X_all["image"], y_all))
    assert all(labels[p] == label for p, label in zip(X["image"], y))
    again = load_osteosarcoma_ut(DATA_DIR, subsample=20, random_state=0)
    other = load_osteosarcoma_ut(DATA_DIR, subsample=20, random_state=1)
    assert X.equals(again[0]) and y.equals(again[1])
    assert not X["image"].equals(other[0]["image"])
    # More than a patient has keeps all of it.
    _, _, groups = load_osteosarcoma_ut(DATA_DIR, subsample=250, random_state=0)
    assert groups.value_counts().to_dict() == {"Case-3": 250, "Case-4": 250, "Case-48": 250,
                                               "P9": 212}


# --- the original layout's quirks, on a small fake copy ---------------------------------

def _tile(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (230, 150, 200)).save(folder / name)


def _csv(folder, rows):
    (folder / "PathologistValidation.csv").write_text("".join(f"{r}\n" for r in rows))


@pytest.fixture
def fake_root(tmp_path):
    set1 = tmp_path / "Training-Set-1" / "set1"
    set2 = tmp_path / "Training-Set-2" / "set1"
    for name in ("Case-3-A10-1-2.jpg", "Case-48-P5-C25-3-4.jpg"):
        _tile(set1, name)
    for name in ("P9-B11-5-6.jpg", "Case-4-C48-7-8.jpg"):
        _tile(set2, name)
    _csv(set1, ["Case 3 A10-1-2.jpg,Non-Viable-Tumor",
                "Case 48 - P5 C25-3-4.jpg,viable: non-viable",
                "Case 3 A10-1-2.jpg,Non-Viable-Tumor",   # duplicate, same label
                "zannotated,Non-Tumor"])                 # dummy row
    _csv(set2, ["P9 B11-5-6.jpg,Non-Tumor", "Case 4 C48-7-8.jpg,Viable", "zannotated,Non-Tumor"])
    return tmp_path


def test_fake_layout(fake_root):
    X, y, groups = load_osteosarcoma_ut(fake_root)
    assert X["tile"].tolist() == ["Case-3-A10-1-2", "Case-48-P5-C25-3-4", "Case-4-C48-7-8",
                                  "P9-B11-5-6"]
    assert groups.tolist() == ["Case-3", "Case-48", "Case-4", "P9"]
    assert X["slide"].tolist() == ["Case-3-A10", "Case-48-P5-C25", "Case-4-C48", "P9-B11"]
    assert y.tolist() == ["Non-Viable-Tumor", "Viable-Tumor", "Viable-Tumor", "Non-Tumor"]
    assert X["raw_label"].tolist() == ["Non-Viable-Tumor", "viable: non-viable", "Viable",
                                       "Non-Tumor"]


def test_missing_root_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_osteosarcoma_ut(missing)


def test_no_label_file_says_what_layout_was_expected(tmp_path):
    _tile(tmp_path / "Training-Set-1" / "set1", "Case-3-A1-1-1.jpg")
    with pytest.raises(FileNotFoundError, match=r"PathologistValidation\.csv.*Training-Set"):
        load_osteosarcoma_ut(tmp_path)


def test_disagreeing_duplicate_is_an_error(fake_root):
    _csv(fake_root / "Training-Set-1" / "set1",
         ["Case 3 A10-1-2.jpg,Non-Viable-Tumor", "Case 48 - P5 C25-3-4.jpg,Viable",
          "Case 3 A10-1-2.jpg,Non-Tumor"])
    with pytest.raises(ValueError, match=r"Case-3-A10-1-2\.jpg.*'Non-Viable-Tumor'.*'Non-Tumor'"):
        load_osteosarcoma_ut(fake_root)


def test_tile_without_coordinates_is_an_error(fake_root):
    _tile(fake_root / "Training-Set-2" / "set1", "P9-B12.jpg")
    _csv(fake_root / "Training-Set-2" / "set1", ["P9 B11-5-6.jpg,Non-Tumor", "P9 B12.jpg,Non-Tumor",
                                                 "Case 4 C48-7-8.jpg,Viable"])
    with pytest.raises(ValueError, match=r"slide of tile .*P9-B12\.jpg.*two integers"):
        load_osteosarcoma_ut(fake_root)


def test_tile_without_label_row_is_an_error(fake_root):
    _tile(fake_root / "Training-Set-2" / "set1", "P9-B12-9-9.jpg")
    with pytest.raises(ValueError, match=r"P9-B12-9-9\.jpg.*no row"):
        load_osteosarcoma_ut(fake_root)


def test_unknown_label_is_an_error(fake_root):
    _csv(fake_root / "Training-Set-2" / "set1",
         ["P9 B11-5-6.jpg,Necrosis", "Case 4 C48-7-8.jpg,Viable"])
    with pytest.raises(ValueError, match="'Necrosis'"):
        load_osteosarcoma_ut(fake_root)


@pytest.mark.parametrize("subsample", [0, -3, 2.5, True, "10"])
def test_bad_subsample(fake_root, subsample):
    with pytest.raises(ValueError, match="subsample"):
        load_osteosarcoma_ut(fake_root, subsample=subsample)


def test_fake_subsample_keeps_per_patient(fake_root):
    X, _, groups = load_osteosarcoma_ut(fake_root, subsample=1, random_state=0)
    assert len(X) == 4 and groups.is_unique


def test_subsample_per_patient_keeps_class_shares_and_small_patients():
    from hiercls.data.datasets import subsample_per_patient

    patients = np.array(["a"] * 10 + ["b"] * 3, dtype=object)
    labels = np.array(["Non-Tumor"] * 6 + ["Viable-Tumor"] * 4 + ["Non-Tumor"] * 3, dtype=object)
    rows = subsample_per_patient(patients, labels, 5, random_state=0)
    assert list(rows) == sorted(rows)
    kept_a = rows[rows < 10]
    assert len(kept_a) == 5 and (labels[kept_a] == "Non-Tumor").sum() == 3
    assert set(range(10, 13)) <= set(rows)  # b has fewer than 5: all kept
    np.testing.assert_array_equal(rows, subsample_per_patient(patients, labels, 5, random_state=0))


def test_loader_states_the_resolution_of_the_512_px_copies(real_data_dir):
    from hiercls.features.resolution import TileResampler

    X, _, _ = load_osteosarcoma_ut(real_data_dir, subsample=3, random_state=0)
    assert X.attrs["mpp"] == 2.0
    assert "mpp" not in X.columns  # the columns, and so the features, as before
    assert TileResampler().fit(X).training_resolution_ == (2.0, 512)


def _rescale_tiles(root, side):
    for path in root.rglob("*.jpg"):
        Image.new("RGB", (side, side), (230, 150, 200)).save(path)


def test_loader_declares_the_originals_and_a_model_of_the_copies_resamples_them(tmp_path, fake_root):
    import shutil

    from hiercls.features.resolution import TileResampler, tcia_mpp

    copies, _, _ = load_osteosarcoma_ut(fake_root)
    assert copies.attrs["mpp"] == tcia_mpp(8)
    model = TileResampler().fit(copies[["image"]])
    originals_root = tmp_path / "originals"
    shutil.copytree(fake_root, originals_root, ignore=shutil.ignore_patterns("originals"))
    _rescale_tiles(originals_root, 16)
    originals, _, _ = load_osteosarcoma_ut(originals_root)
    assert originals.attrs["mpp"] == tcia_mpp(16) == copies.attrs["mpp"] / 2
    out = model.transform(originals[["image"]])  # the loader's declaration, read in transform
    assert [tile.shape for tile in out["image"]] == [(8, 8, 3)] * len(originals)
    # The copies themselves pass through, the very frame.
    assert model.transform(copies[["image"]]).equals(copies[["image"]])


def test_loader_names_a_tile_it_cannot_read(fake_root):
    from hiercls.data.images import UnreadableTileError

    bad = next(fake_root.rglob("*.jpg"))
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UnreadableTileError, match=bad.name):
        load_osteosarcoma_ut(fake_root)


def test_tcia_patient_and_slide_read_the_file_name():
    from hiercls.data.datasets import tcia_patient, tcia_slide

    for name, patient, slide in [("Case-4-C21-29849-33988.jpg", "Case-4", "Case-4-C21"),
                                 ("/x/set3/case-48-P5-C13-10-20.JPG", "Case-48", "case-48-P5-C13"),
                                 ("P9-B11-1024-2048.png", "P9", "P9-B11")]:
        assert (tcia_patient(name), tcia_slide(name)) == (patient, slide)
    with pytest.raises(ValueError, match="patient of tile 'scan.png'"):
        tcia_patient("scan.png")
    with pytest.raises(ValueError, match="slide of tile 'Case-4-C21.png'.*two integers"):
        tcia_slide("Case-4-C21.png")
