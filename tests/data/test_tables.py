"""Tiles from a CSV or a folder: hiercls.data.tables, the loaders behind the CLI."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from hiercls import CLASS_NAMES
from hiercls.data import datasets, images, tables
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.data.tables import (
    CSV_COLUMNS,
    class_names,
    is_tcia_folder,
    load_labelled_tiles,
    load_tiles,
    read_tile_csv,
    subsample_tiles,
)


@pytest.fixture
def tiles(tmp_path):
    """12 PNG tiles of 3 patients under images/<patient>/, and tiles.csv with relative paths."""
    X, y, groups = make_synthetic_tiles(n_tiles=12, n_patients=3, size=16, random_state=0)
    rows = []
    for k, (image, label, patient) in enumerate(zip(X["image"], y, groups)):
        relative = Path("images") / patient / f"{patient}-{k:02d}.png"
        (tmp_path / relative.parent).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / relative)
        rows.append({"image": relative.as_posix(), "label": int(label), "patient": patient})
    pd.DataFrame(rows).to_csv(tmp_path / "tiles.csv", index=False)
    return tmp_path / "tiles.csv"


def _tcia_folder(root):
    """A tiny copy of the TCIA layout: two JPEG tiles and their header-less label file."""
    folder = root / "Training-Set-1" / "set1"
    folder.mkdir(parents=True)
    X, _, _ = make_synthetic_tiles(n_tiles=2, n_patients=1, size=16, random_state=0)
    names = ["Case-3-A10-1-1.jpg", "Case-3-A10-2-2.jpg"]
    for name, image in zip(names, X["image"]):
        Image.fromarray(image).save(folder / name)
    (folder / datasets.LABEL_FILE).write_text(f"{names[0]},Non-Tumor\n{names[1]},Viable\n")
    return root


def test_labelled_csv_gives_absolute_paths_class_names_and_patients(tiles):
    X, y, groups = load_labelled_tiles(tiles)
    assert list(X.columns) == ["image"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in X["image"])
    assert set(y) <= set(CLASS_NAMES) and y.name == "label"
    codes = pd.read_csv(tiles)["label"]
    assert y.tolist() == [CLASS_NAMES[c] for c in codes]
    assert groups.name == "patient" and groups.nunique() == 3


def test_csv_without_labels_reads_only_the_image_column(tiles, tmp_path):
    table = pd.read_csv(tiles)[["image"]]
    table.to_csv(tmp_path / "images.csv", index=False)
    X = load_tiles(tmp_path / "images.csv")
    assert list(X.columns) == ["image"] and len(X) == 12
    # and a labelled CSV keeps its labels, as class names
    assert set(load_tiles(tiles)["label"]) <= set(CLASS_NAMES)


def test_a_folder_is_searched_recursively_for_tiles(tiles):
    X = load_tiles(tiles.parent / "images")
    assert len(X) == 12 and X["image"].tolist() == sorted(X["image"])
    assert len(load_tiles(tiles.parent / "images", subsample=2)) == 2   # one "patient"


def test_a_tcia_folder_is_read_with_its_labels(tmp_path):
    root = _tcia_folder(tmp_path / "tcia")
    assert is_tcia_folder(root)
    (tmp_path / "plain").mkdir()
    assert not is_tcia_folder(tmp_path / "plain")
    X, y, groups = load_labelled_tiles(root)
    assert y.tolist() == ["Non-Tumor", "Viable-Tumor"]
    assert groups.tolist() == ["Case-3", "Case-3"]
    X = load_tiles(root, labels=True)
    assert {"label", "patient"} <= set(X.columns)
    assert "label" not in load_tiles(root).columns       # without labels=True: just images


def test_a_missing_column_is_named(tiles):
    renamed = tiles.parent / "renamed.csv"
    pd.read_csv(tiles).drop(columns=["patient"]).to_csv(renamed, index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) 'patient'") as error:
        load_labelled_tiles(renamed, name="DATA")
    assert str(error.value).startswith(f"DATA {str(renamed)!r}")
    with pytest.raises(ValueError, match="'stain'"):
        read_tile_csv(renamed, ("image", "stain"))

def test_bad_inputs_raise_clear_errors(tiles, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tiles(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        load_tiles(empty)
    table = pd.read_csv(tiles)
    table.loc[0, "image"] = "images/missing.png"
    table.to_csv(tmp_path / "absent.csv", index=False)
    with pytest.raises(ValueError, match="line 2.*images/missing.png"):
        load_labelled_tiles(tmp_path / "absent.csv")
    pd.read_csv(tiles).assign(label="Necrosis").to_csv(tmp_path / "wrong.csv", index=False)
    with pytest.raises(ValueError, match="'Necrosis'"):
        load_labelled_tiles(tmp_path / "wrong.csv")
    with pytest.raises(ValueError, match="neither a folder nor a .csv"):
        load_labelled_tiles(tiles.parent / "images" / "patient-1" / next(
            (tiles.parent / "images" / "patient-1").iterdir()).name)


def test_the_tile_suffixes_are_one_list():
    from hiercls.cli import parser

    assert datasets.TILE_SUFFIXES is images.TILE_SUFFIXES
    assert tables.TILE_SUFFIXES is images.TILE_SUFFIXES
    assert ".png" in images.TILE_SUFFIXES and ".jpg" in images.TILE_SUFFIXES
    assert parser.TILE_SUFFIXES is images.TILE_SUFFIXES


def test_the_tcia_loader_accepts_every_tile_suffix(tmp_path):
    root = tmp_path / "tcia"
    folder = root / "Training-Set-1" / "set1"
    folder.mkdir(parents=True)
    X, _, _ = make_synthetic_tiles(n_tiles=1, n_patients=1, size=16, random_state=0)
    Image.fromarray(X["image"][0]).save(folder / "Case-3-A10-1-1.png")
    (folder / datasets.LABEL_FILE).write_text("Case-3-A10-1-1.png,Non-Tumor\n")
    X, y, _ = load_labelled_tiles(root)
    assert len(X) == 1 and y.tolist() == ["Non-Tumor"]


def test_class_names_and_subsample():
    assert class_names(pd.Series([0, 2])).tolist() == ["Non-Tumor", "Viable-Tumor"]
    assert class_names(pd.Series(["Viable-Tumor"])).tolist() == ["Viable-Tumor"]
    with pytest.raises(ValueError, match="my labels"):
        class_names(pd.Series([0, "Viable-Tumor"]), "my labels")
    table = pd.DataFrame({"image": list("abcdef"), "patient": list("aabbcc"),
                          "label": ["Non-Tumor", "Viable-Tumor"] * 3})
    kept = subsample_tiles(table, 1, random_state=0)
    assert sorted(kept["patient"]) == ["a", "b", "c"]
    assert subsample_tiles(table, None) is table
    assert CSV_COLUMNS == ("image", "label", "patient")
