"""Tissue detection: every real tissue tile kept, pale ones included; glass, specks and pen
marks dropped; the clean-up sizes in micrometres; named errors."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hiercls.data.datasets import make_synthetic_tiles
from hiercls.slides import tissue

pytest.importorskip("openslide", reason="openslide-python is not installed (pip install 'hiercls[slides]')")
pytest.importorskip("tifffile")

from hiercls import slides  # noqa: E402  (after the skip: it needs openslide)

from .test_slides import assemble, write_slide  # noqa: E402

#: The one TCIA tile of the 1,144 whose pixels hold no tissue: glass with an out-of-focus
#: speck of dust (its tissue fraction is under 0.001 on every thumbnail tried).
GLASS_ONLY_TILE = "P9-B11-25615-35242"

#: A field of view of 1 mm, as the TCIA tiles': 256 px at 4 um/px.
SIDE, MPP = 256, 4.0


def _found(grid, side):
    return {(int(y) // side, int(x) // side) for x, y in zip(grid["x"], grid["y"])}


def _glass(shape, rng):
    """Glass of a scanned slide: light gray with a little noise of its own."""
    return np.clip(rng.normal(244, 1.5, size=(*shape, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def synthetic_tissue():
    X, _, _ = make_synthetic_tiles(n_tiles=6, n_patients=1, size=SIDE, random_state=0)
    return list(X["image"])


def test_every_real_tile_of_each_class_is_found_and_glass_is_not(real_data_dir, tmp_path):
    manifest = pd.read_csv(real_data_dir / "manifest.csv")
    manifest = manifest[manifest["tile"] != GLASS_ONLY_TILE]

    def paleness(path):
        image = Image.open(real_data_dir / path)
        image.draft("RGB", (64, 64))      # the JPEG decoded at 1/8: enough for a mean
        return float(np.asarray(image.convert("L")).mean())

    # The palest tiles of each patient and class: pale necrosis, loose stroma, fat and
    # tiles mostly of glass, the ones a detector loses first.
    manifest = manifest.assign(gray=[paleness(p) for p in manifest["path"]])
    chosen = manifest.sort_values("gray", ascending=False).groupby(["patient", "label"]).head(4)
    assert chosen.groupby("label").size().min() >= 4
    tiles = [np.asarray(Image.open(real_data_dir / p).convert("RGB")) for p in chosen["path"]]
    side, columns = tiles[0].shape[0], 7
    # Every fourth cell stays glass, amid tissue on all sides for some of them.
    cells = [divmod(k, columns) for k in range(4 * len(tiles)) if k % 4 != 1][:len(tiles)]
    rows = cells[-1][0] + 1
    path = write_slide(tmp_path / "palest.tif",
                       assemble(tiles, cells, rows=rows, columns=columns), 2.0)
    grid = slides.tile_grid(path, mpp=2.0, tile_size=side)
    missed = [tile for tile, cell in zip(chosen["tile"], cells) if cell not in _found(grid, side)]
    assert missed == []
    assert _found(grid, side) == set(cells)          # no glass cell either


def test_pen_marks_on_glass_are_dropped_and_tissue_under_a_pen_line_kept(synthetic_tissue,
                                                                         tmp_path):
    rng = np.random.default_rng(0)
    canvas = _glass((3 * SIDE, 4 * SIDE), rng)
    tissue_cells = [(0, 0), (1, 1), (2, 3)]
    for tile, (r, c) in zip(synthetic_tissue, tissue_cells):
        canvas[r * SIDE:(r + 1) * SIDE, c * SIDE:(c + 1) * SIDE] = tile
    # Strokes of blue, green and black marker, 20 px (80 um) wide, across glass cells, and
    # one blue stroke across the tissue cell (1, 1).
    inks = {(0, 2): (35, 70, 170), (1, 3): (40, 140, 80), (2, 0): (25, 25, 30),
            (1, 1): (35, 70, 170)}
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    for (r, c), ink in inks.items():
        stroke = np.abs(yy - 0.6 * xx - 40) < 10 + rng.normal(0, 1, size=yy.shape)
        cell = canvas[r * SIDE:(r + 1) * SIDE, c * SIDE:(c + 1) * SIDE]
        cell[stroke] = np.clip(np.array(ink) + rng.normal(0, 6, size=(int(stroke.sum()), 3)),
                               0, 255).astype(np.uint8)
    path = write_slide(tmp_path / "pen.tif", canvas, MPP)
    assert _found(slides.tile_grid(path, mpp=MPP, tile_size=SIDE), SIDE) == set(tissue_cells)
    # The ink itself is never tissue, where it crosses tissue too.
    mask, _ = slides.tissue_mask(path)
    assert mask[tissue.pen_mask(canvas)].mean() < 0.01


def test_specks_on_glass_are_dropped(synthetic_tissue, tmp_path):
    rng = np.random.default_rng(1)
    canvas = _glass((2 * SIDE, 3 * SIDE), rng)
    canvas[:SIDE, :SIDE] = synthetic_tissue[0]
    yy, xx = np.mgrid[0:canvas.shape[0], 0:canvas.shape[1]]
    colours = [(70, 40, 90), (200, 90, 150), (120, 90, 60), (90, 90, 90)]
    # Dust and debris of 12 to 48 um across, 30 of them, on the glass cells only.
    for _ in range(30):
        r, c = divmod(int(rng.integers(1, 6)), 3)
        cy, cx = r * SIDE + rng.integers(20, SIDE - 20), c * SIDE + rng.integers(20, SIDE - 20)
        radius = rng.uniform(1.5, 6.0)
        canvas[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = colours[int(rng.integers(4))]
    path = write_slide(tmp_path / "specks.tif", canvas, MPP)
    grid = slides.tile_grid(path, mpp=MPP, tile_size=SIDE, min_tissue=1e-6)
    assert _found(grid, SIDE) == {(0, 0)}


def test_fat_with_septa_is_tissue_and_a_tinted_glass_is_not():
    # Fat: empty cells 60 um across in a lattice of pink septa, two pixels wide as a
    # thumbnail's resampling draws them (the 3 x 3 median against noise removes lines of
    # one pixel; the real fat tiles of the test above are found on their thumbnail).
    glass = (232, 238, 248)                  # bluish; an empty fat cell shows the glass
    picture = np.full((200, 200, 3), glass, np.uint8)
    fat = np.full((100, 100, 3), glass, np.uint8)
    for offset in (0, 1):
        fat[offset::15] = (215, 150, 190)
        fat[:, offset::15] = (215, 150, 190)
    picture[50:150, 50:150] = fat
    mask = tissue.detect_tissue(picture, mpp=MPP)
    assert mask[55:145, 55:145].mean() > 0.95       # the fat cells filled as tissue
    assert not mask[:40].any() and not mask[160:].any()
    # Tinted glass alone: nothing.
    assert not tissue.detect_tissue(np.full((80, 80, 3), (232, 238, 248), np.uint8)).any()


def test_pale_eosin_is_tissue_whatever_else_the_slide_holds():
    rng = np.random.default_rng(2)
    picture = _glass((120, 240), rng)
    picture[20:100, 20:100] = (150, 40, 110)        # dense, strongly stained tissue
    picture[20:100, 140:220] = np.clip(rng.normal((226, 214, 222), 3, size=(80, 80, 3)),
                                       0, 255).astype(np.uint8)   # pale necrosis
    mask = tissue.detect_tissue(picture, mpp=MPP)
    assert mask[25:95, 145:215].mean() > 0.95
    assert mask[25:95, 25:95].all() and not mask[:, 110:130].any()


def test_clean_up_sizes_follow_the_resolution_and_the_tile():
    picture = np.full((100, 100, 3), 244, np.uint8)
    picture[40:50, 40:50] = (150, 40, 110)          # 10 x 10 px
    # 40 um across at 4 um/px: a speck (below MIN_OBJECT_UM2) ...
    assert not tissue.detect_tissue(picture, mpp=4.0).any()
    # ... 400 um across at 40 um/px: tissue.
    assert tissue.detect_tissue(picture, mpp=40.0)[42:48, 42:48].all()
    # For tiles of 160 um, 1 % of a tile is 256 um^2: the 40 um square stays.
    assert tissue.detect_tissue(picture, mpp=4.0, tile_um=160.0)[42:48, 42:48].all()


@pytest.mark.parametrize("picture, match", [
    (np.zeros((8, 8), np.uint8), "RGB uint8"),
    (np.zeros((8, 8, 3), np.float32), "RGB uint8"),
    (np.zeros((0, 8, 3), np.uint8), "RGB uint8"),
])
def test_a_picture_that_is_not_rgb_gets_a_named_error(picture, match):
    with pytest.raises(ValueError, match=f"picture.*{match}"):
        tissue.detect_tissue(picture)


@pytest.mark.parametrize("name", ["mpp", "tile_um"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "2"])
def test_sizes_that_are_not_positive_get_a_named_error(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive number"):
        tissue.detect_tissue(np.full((8, 8, 3), 244, np.uint8), **{name: value})


def test_the_cli_default_min_tissue_is_the_library_one():
    from hiercls.cli.parser import build_parser

    args = build_parser().parse_args(["slide", "model.hiercls", "a.svs", "--out", "o"])
    assert args.min_tissue == slides.MIN_TISSUE


def test_a_slide_mpp_that_is_not_a_resolution_gets_a_named_error(synthetic_tissue, tmp_path):
    path = write_slide(tmp_path / "s.tif", assemble(synthetic_tissue[:1], [(0, 0)], rows=1,
                                                    columns=2), MPP)
    with pytest.raises(ValueError, match="slide_mpp"):
        slides.tissue_mask(path, slide_mpp=-1.0)
    # Without any resolution, the clean-up takes a whole slide's thumbnail.
    bare = write_slide(tmp_path / "bare.tif", assemble(synthetic_tissue[:1], [(0, 0)], rows=1,
                                                       columns=2), MPP, resolution=False)
    mask, thumbnail = slides.tissue_mask(bare)
    assert mask.shape == thumbnail.shape[:2] and mask[:, :SIDE].mean() > 0.9
    assert not mask[:, SIDE + 2:].any()
