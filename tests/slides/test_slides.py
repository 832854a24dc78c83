"""Whole slides: tiles read back exactly, the same predictions as on the tiles themselves,
background never classified, resolution honoured, named errors, maps, report, CLI and Dask.

Every slide is written by the tests with tifffile: a pyramidal tiled TIFF (pages of
halving size, resolution tags in pixels per centimetre) assembled from tiles on white glass.
"""

import copy
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hiercls import CLASS_NAMES, make_fusion_pipeline
from hiercls.cli import main
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.evaluation.necrosis import necrosis_from_probabilities

from ..conftest import TINY_CLASSIFIER

pytest.importorskip("openslide", reason="openslide-python is not installed (pip install 'hiercls[slides]')")
tifffile = pytest.importorskip("tifffile")

from hiercls import slides  # noqa: E402  (after the skip: it needs openslide)

TILE = 32          # the tiny model's tile side (px)
MPP = 2.0          # the model's resolution in these tests (um/px)
ROWS, COLUMNS = 4, 5


def write_slide(path, image, mpp, *, levels=3, compression="zlib", resolution=True):
    """A pyramidal tiled TIFF: level k is level 0 subsampled by 2**k."""
    with tifffile.TiffWriter(path) as writer:
        level = image
        for k in range(levels):
            options = {}
            if resolution:
                per_cm = 1e4 / (mpp * 2 ** k)
                options = dict(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
            writer.write(level, tile=(64, 64), compression=compression, photometric="rgb",
                         subfiletype=0 if k == 0 else 1, **options)
            level = level[::2, ::2]
    return path


def assemble(tiles, cells, *, rows=ROWS, columns=COLUMNS, margin=(7, 5)):
    """White glass with ``tiles[k]`` at grid cell ``cells[k]`` (row, column); a margin
    right and below that holds no whole tile."""
    side = tiles[0].shape[0]
    canvas = np.full((rows * side + margin[0], columns * side + margin[1], 3), 255, np.uint8)
    for tile, (r, c) in zip(tiles, cells):
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    return canvas


@pytest.fixture(scope="module")
def source():
    X, y, _ = make_synthetic_tiles(n_tiles=48, n_patients=4, size=TILE, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def pipeline(source):
    X, y = source
    return make_fusion_pipeline(preset="none", **TINY_CLASSIFIER, radiomics__mask="full",
                                radiomics__cache=None).fit(X[["image"]], y)


@pytest.fixture(scope="module")
def declared_pipeline(source):
    """Fitted on tiles that declare their resolution (as load_osteosarcoma_ut's do)."""
    X, y = source
    X = X[["image"]].copy()
    X.attrs["mpp"] = MPP
    return make_fusion_pipeline(preset="none", **TINY_CLASSIFIER, radiomics__mask="full",
                                radiomics__cache=None).fit(X, y)


#: Tissue on every cell but a checkerboard-ish third, which stays glass.
CELLS = [(r, c) for r in range(ROWS) for c in range(COLUMNS) if (r + c) % 3]


@pytest.fixture(scope="module")
def slide(source, tmp_path_factory):
    X, _ = source
    tiles = list(X["image"][:len(CELLS)])
    path = tmp_path_factory.mktemp("slides") / "slide.tif"
    write_slide(path, assemble(tiles, CELLS), MPP)
    return path, tiles


def _by_cell(table, extent=TILE):
    return {(int(y) // extent, int(x) // extent): k
            for k, (x, y) in enumerate(zip(table["x"], table["y"]))}


def test_slide_tiles_are_the_tiles_the_slide_was_assembled_from(slide):
    path, tiles = slide
    X = slides.slide_tiles(path, mpp=MPP, tile_size=TILE)
    assert list(X.columns) == ["image", "mpp"] and list(X.index.names) == ["x", "y"]
    assert (X["mpp"] == MPP).all()  # the tiles declare the resolution they were read at
    assert X.attrs["extent"] == TILE
    X = X.reset_index()
    where = _by_cell(X)
    assert set(where) == set(CELLS)                      # every tissue tile, nothing else
    for k, cell in enumerate(CELLS):
        np.testing.assert_array_equal(X["image"].iloc[where[cell]], tiles[k])  # lossless


def test_predictions_from_the_slide_equal_predictions_on_the_tiles(slide, pipeline):
    path, tiles = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, batch_size=7,
                                 verbose=0)
    assert list(table.columns) == ["x", "y", "extent", "tissue", *CLASS_NAMES, "predicted",
                                   "gate_image", "gate_radiomics"]
    order = [CELLS.index((int(y) // TILE, int(x) // TILE)) for x, y in zip(table["x"], table["y"])]
    direct = pd.DataFrame({"image": pd.Series([tiles[k] for k in order], dtype=object)})
    # The tiles are identical (test above); the slide's batches differ from one batch of
    # all tiles, and float32 kernels round by batch shape: equal to float32 precision.
    np.testing.assert_allclose(table[list(CLASS_NAMES)].to_numpy(),
                               pipeline.predict_proba(direct), rtol=0, atol=1e-6)
    features = pipeline[:-1].transform(direct)
    np.testing.assert_allclose(table[["gate_image", "gate_radiomics"]].to_numpy(),
                               pipeline[-1].gate_weights(features).to_numpy(), rtol=0, atol=1e-6)
    names = np.asarray(CLASS_NAMES, dtype=object)[pipeline.predict(direct).astype(int)]
    np.testing.assert_array_equal(table["predicted"], names)
    assert table.attrs["mpp"] == MPP and table.attrs["tile_size"] == TILE


def test_background_is_never_classified(tmp_path, pipeline, source):
    X, _ = source
    # Glass with faint scanner noise and one tile of tissue.
    rng = np.random.default_rng(0)
    glass = rng.integers(243, 256, size=(ROWS * TILE, COLUMNS * TILE, 3)).astype(np.uint8)
    glass[TILE:2 * TILE, 2 * TILE:3 * TILE] = X["image"][0]
    table = slides.predict_slide(pipeline, write_slide(tmp_path / "one.tif", glass, MPP),
                                 mpp=MPP, tile_size=TILE, verbose=0)
    assert list(zip(table["x"], table["y"])) == [(2 * TILE, TILE)]

    blank = np.full((ROWS * TILE, COLUMNS * TILE, 3), 255, np.uint8)
    empty = slides.predict_slide(pipeline, write_slide(tmp_path / "blank.tif", blank, MPP),
                                 mpp=MPP, tile_size=TILE, verbose=0)
    assert len(empty) == 0 and "Viable-Tumor" in empty.columns
    necrosis = slides.slide_necrosis(empty, n_bootstrap=10)
    assert necrosis["n_tiles"].iloc[0] == 0 and necrosis["response"].iloc[0] == "no tumor"


def test_a_jpeg_compressed_slide_gives_nearly_the_same_predictions(source, pipeline, tmp_path):
    pytest.importorskip("imagecodecs", reason="tifffile writes JPEG-compressed TIFF with imagecodecs")
    X, _ = source
    tiles = list(X["image"][:len(CELLS)])
    path = write_slide(tmp_path / "jpeg.tif", assemble(tiles, CELLS), MPP, compression="jpeg")
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    where = _by_cell(table)
    assert set(where) == set(CELLS)           # JPEG noise on glass is not tissue
    direct = pd.DataFrame({"image": pd.Series([tiles[CELLS.index(cell)] for cell in where],
                                              dtype=object)})
    expected = pipeline.predict_proba(direct)
    got = table[list(CLASS_NAMES)].to_numpy()[list(where.values())]
    assert not np.array_equal(got, expected)  # lossy: not the same pixels ...
    np.testing.assert_allclose(got, expected, atol=0.05)  # ... but nearly the same answer


def test_slide_at_twice_the_resolution_gives_the_same_tiles(slide, pipeline, tmp_path):
    from hiercls.features.resolution import resample_tile

    path, tiles = slide
    at_model = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    level0 = np.asarray(slides.open_slide(path).read_region((0, 0), 0,
                                                            slides.open_slide(path).dimensions))[..., :3]
    fine = np.repeat(np.repeat(level0, 2, axis=0), 2, axis=1)

    # With a pyramid, its level at the model's resolution is not read (a subsampling made
    # it here, as it may elsewhere): level 0, resampled as a tile file at MPP / 2 is.
    pyramid = write_slide(tmp_path / "fine.tif", fine, MPP / 2)
    assert slides.open_slide(pyramid).level_downsamples[1] == 2.0
    X = slides.slide_tiles(pyramid, mpp=MPP, tile_size=TILE).reset_index()
    assert set(_by_cell(X, 2 * TILE)) == set(CELLS)
    np.testing.assert_array_equal(X["x"], 2 * at_model["x"])
    for image, x, y in zip(X["image"], X["x"], X["y"]):
        np.testing.assert_array_equal(image, resample_tile(fine[y:y + 2 * TILE, x:x + 2 * TILE],
                                                           size=TILE))

    # Level 0 only: each tile is resampled (Lanczos) from twice as many pixels.
    flat = write_slide(tmp_path / "flat.tif", fine, MPP / 2, levels=1)
    table = slides.predict_slide(pipeline, flat, mpp=MPP, tile_size=TILE, verbose=0)
    np.testing.assert_array_equal(table[["x", "y"]], 2 * at_model[["x", "y"]])
    np.testing.assert_allclose(table[list(CLASS_NAMES)], at_model[list(CLASS_NAMES)], atol=0.02)
    assert (table["predicted"] == at_model["predicted"]).mean() >= 0.9


def test_resolution_comes_from_the_pipeline_when_it_declares_it(slide, declared_pipeline):
    path, _ = slide
    pipeline = declared_pipeline
    # The fitted pipeline's TileResampler declares it: the tiles' mpp and side.
    assert slides.model_resolution(pipeline) == (MPP, TILE)
    implicit = slides.predict_slide(pipeline, path, verbose=0)
    explicit = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    pd.testing.assert_frame_equal(implicit, explicit)
    # Another training resolution (same field of view): the grid follows it, the tiles
    # are read at it and declared so.
    coarse = copy.deepcopy(pipeline)
    coarse.named_steps["resolution"].training_resolution_ = (2 * MPP, TILE // 2)
    assert slides.resolve_model_resolution(coarse) == (2 * MPP, TILE // 2)
    X = slides.slide_tiles(path, pipeline=coarse).reset_index()
    assert X["image"].iloc[0].shape == (TILE // 2, TILE // 2, 3)
    assert (X["mpp"] == 2 * MPP).all()
    np.testing.assert_array_equal(X[["x", "y"]].to_numpy(), implicit[["x", "y"]].to_numpy())
    # A pipeline that declares nothing: the TCIA tiles' resolution, whose 512 px tiles
    # do not fit this slide.
    bare = copy.deepcopy(pipeline)
    del bare.named_steps["resolution"].training_resolution_
    assert slides.model_resolution(bare) is None
    assert slides.resolve_model_resolution(bare) == slides.DEFAULT_RESOLUTION


def test_tiles_are_streamed_in_bounded_batches(slide):
    path, _ = slide
    batches = slides.iter_tile_batches(path, mpp=MPP, tile_size=TILE, batch_size=4)
    assert not isinstance(batches, (list, tuple))              # a generator
    sizes = [len(batch) for batch in batches]
    assert max(sizes) == 4 and sum(sizes) == len(CELLS)


def test_missing_and_corrupt_slides_give_named_errors(tmp_path, pipeline):
    missing = tmp_path / "absent.svs"
    with pytest.raises(FileNotFoundError, match="absent.svs"):
        slides.predict_slide(pipeline, missing, verbose=0)
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    with pytest.raises(slides.SlideReadError, match="corrupt.svs"):
        slides.predict_slide(pipeline, corrupt, verbose=0)
    text = tmp_path / "notes.tif"
    text.write_text("not a slide")
    with pytest.raises(slides.SlideReadError, match="notes.tif"):
        slides.tile_grid(text, mpp=MPP, tile_size=TILE)


def test_corrupt_tile_data_gives_a_named_error(tmp_path, pipeline):
    rng = np.random.default_rng(0)
    path = write_slide(tmp_path / "damaged.tif",
                       rng.integers(0, 200, size=(512, 512, 3)).astype(np.uint8), MPP)
    data = bytearray(path.read_bytes())
    # Level 0's tiles fill the first part of the file; the small levels after it (and the
    # thumbnail read from them) stay intact.
    data[len(data) // 10: len(data) // 3] = b"Z" * (len(data) // 3 - len(data) // 10)
    path.write_bytes(bytes(data))
    with pytest.raises(slides.SlideReadError, match="damaged.tif.*failed"):
        slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)


def test_progress_bar_shows_and_can_be_silenced(slide, pipeline, capsys):
    path, _ = slide
    slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    assert capsys.readouterr().err == ""
    slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=1)
    assert f"{len(CELLS)}/{len(CELLS)}" in capsys.readouterr().err


def test_a_slide_without_resolution_needs_slide_mpp(tmp_path, slide, pipeline):
    path, _ = slide
    image = np.asarray(slides.open_slide(path).read_region((0, 0), 0, (160, 128)))[..., :3]
    bare = write_slide(tmp_path / "bare.tif", image, MPP, resolution=False)
    with pytest.raises(ValueError, match="slide_mpp"):
        slides.tile_grid(bare, mpp=MPP, tile_size=TILE)
    grid = slides.tile_grid(bare, mpp=MPP, tile_size=TILE, slide_mpp=MPP)
    assert len(grid) > 0


def test_slide_and_patient_necrosis_use_the_necrosis_estimator(slide, pipeline):
    path, _ = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    one = slides.slide_necrosis(table, n_bootstrap=200)
    expected = necrosis_from_probabilities(table, ["slide.tif"] * len(table), n_bootstrap=200)
    np.testing.assert_allclose(one["necrotic_fraction_low"], expected["necrotic_fraction_low"])
    assert one.index.tolist() == ["slide.tif"] and one.index.name == "slide"

    half = table.iloc[: len(table) // 2]
    pooled = slides.patient_necrosis({"a": table, "b": half}, {"a": "P1", "b": "P1"},
                                     n_bootstrap=0)
    both = pd.concat([table, half])
    assert pooled.index.tolist() == ["P1"]
    assert pooled["n_tiles"].iloc[0] == len(both)
    np.testing.assert_allclose(pooled["necrotic_fraction"].iloc[0],
                               both["Non-Viable-Tumor"].sum()
                               / both[["Non-Viable-Tumor", "Viable-Tumor"]].to_numpy().sum())


def test_a_patient_without_tissue_gets_a_typed_row(slide, pipeline):
    path, _ = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    blank = table.iloc[:0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # pandas deprecates changing a column's type in place
        mixed = slides.patient_necrosis({"a": table, "b": blank}, {"a": "P1", "b": "P2"},
                                        n_bootstrap=0)
        alone = slides.patient_necrosis({"b": blank}, {"b": "P2"}, n_bootstrap=0)
    assert mixed.index.tolist() == ["P1", "P2"] and alone.index.tolist() == ["P2"]
    for got in (mixed.loc["P2"], alone.loc["P2"]):
        assert got["n_tiles"] == 0 and got["response"] == "no tumor"
        assert np.isnan(got["necrotic_fraction"]) and pd.isna(got["method"])
    assert alone.dtypes.to_dict() == mixed.dtypes.to_dict()
    assert alone.index.name == mixed.index.name == "patient"


def test_maps_and_report(slide, pipeline, tmp_path):
    path, _ = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    overlay = slides.plot_slide_overlay(table)
    heatmap = slides.plot_slide_heatmap(table)
    assert isinstance(overlay, Figure) and isinstance(heatmap, Figure)
    report = slides.write_slide_report(
        tmp_path, {"slide": {"tiles": table, "necrosis": slides.slide_necrosis(table)}})
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "Necrosis per slide" in page


def test_an_overlay_without_tissue_shows_none_of_the_slides_pixels(slide, pipeline):
    path, _ = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    shown = slides.plot_slide_overlay(table, alpha=1.0).axes[0].images[0].get_array()
    blank = slides.plot_slide_overlay(table, alpha=1.0, tissue=False).axes[0].images[0].get_array()
    assert shown.shape == blank.shape and (np.asarray(shown) != 255).any()
    assert (np.asarray(blank) == 255).all()   # white under the class colours: no slide pixel


@pytest.fixture(scope="module")
def model_file(declared_pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(declared_pipeline, path)
    return path


@pytest.fixture(scope="module")
def undeclared_model_file(pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "undeclared.joblib"
    joblib.dump(pipeline, path)
    return path


def test_cli_slide_writes_tables_maps_and_report(slide, model_file, tmp_path, capsys):
    path, _ = slide
    out = tmp_path / "out"
    assert main(["slide", str(model_file), str(path), str(path), "--out", str(out),
                 "--mpp", str(MPP), "--tile-size", str(TILE), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    for folder in ("slide", "slide-2"):                  # the same slide twice: two folders
        for name in ("tiles.csv", "necrosis.csv", "overlay.png", "heatmap.png"):
            assert (out / folder / name).is_file()
        assert len(pd.read_csv(out / folder / "tiles.csv")) == len(CELLS)
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def test_cli_slide_errors_are_one_line(slide, model_file, tmp_path, capsys):
    absent = tmp_path / "absent.svs"
    assert main(["slide", str(model_file), str(absent), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hiercls slide: error: SLIDE") and "absent.svs" in error
    assert error.count("\n") == 1
    corrupt = tmp_path / "broken.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    assert main(["slide", str(model_file), str(corrupt), "--out", str(tmp_path / "o"), "-q"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hiercls slide: error: ") and "broken.tif" in error
    assert error.count("\n") == 1


def test_slide_from_real_tiles_matches_the_tiles(real_data_dir, pipeline, tmp_path):
    from hiercls.data.datasets import load_osteosarcoma_ut
    from hiercls.data.images import read_tile

    X, y, _ = load_osteosarcoma_ut(real_data_dir, subsample=2, random_state=0)
    tiles = [read_tile(p) for p in X["image"][:4]]
    side = tiles[0].shape[0]
    cells = [(0, 0), (0, 2), (1, 1), (1, 2)]
    path = write_slide(tmp_path / "real.tif",
                       assemble(tiles, cells, rows=2, columns=3, margin=(0, 0)), MPP)
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=side, verbose=0)
    where = _by_cell(table, side)
    # Every tissue tile (fat and pale ones too: tests/slides/test_tissue.py), no glass.
    assert set(where) == set(cells)
    order = [cells.index(cell) for cell in where]
    direct = pd.DataFrame({"image": pd.Series([tiles[k] for k in order], dtype=object)})
    np.testing.assert_allclose(table[list(CLASS_NAMES)].to_numpy()[list(where.values())],
                               pipeline.predict_proba(direct), rtol=0, atol=1e-6)


def test_predict_slides_under_dask_backend_match_local(slide, pipeline):
    distributed = pytest.importorskip("dask.distributed")
    path, _ = slide
    local = slides.predict_slides(pipeline, [path, path], mpp=MPP, tile_size=TILE, verbose=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, \
            distributed.get_task_stream(client) as tasks, \
            joblib.parallel_config(backend="dask"):
        remote = slides.predict_slides(pipeline, [path, path], mpp=MPP, tile_size=TILE,
                                       n_jobs=-1, verbose=0)
    assert len(tasks.data) >= 2                              # the slides ran on the cluster
    for a, b in zip(local, remote):
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)


# --------------------------------------------------------------------------------------
# Review of issue 12: resolution known or required, one network pass, caches, tolerance

def test_a_model_trained_on_undeclared_tiles_needs_mpp(slide, pipeline, undeclared_model_file,
                                                       tmp_path, capsys):
    path, _ = slide
    # The side is known (32 px) but not the micrometres per pixel: no silent 2.0.
    with pytest.raises(ValueError, match=r"mpp=.*--mpp"):
        slides.resolve_model_resolution(pipeline)
    with pytest.raises(ValueError, match="declared no resolution"):
        slides.predict_slide(pipeline, path, verbose=0)
    assert slides.resolve_model_resolution(pipeline, mpp=MPP) == (MPP, TILE)
    # TileResampler(mpp=...) declares it too.
    stated = copy.deepcopy(pipeline)
    stated.named_steps["resolution"].mpp = MPP
    assert slides.resolve_model_resolution(stated) == (MPP, TILE)
    assert main(["slide", str(undeclared_model_file), str(path), "--out", str(tmp_path / "o"),
                 "-q"]) == 2
    error = capsys.readouterr().err
    assert "--mpp" in error and error.count("\n") == 1


def test_overrides_that_disagree_with_the_model_warn(slide, declared_pipeline):
    path, _ = slide
    with warnings.catch_warnings():
        warnings.simplefilter("error", slides.ResolutionMismatchWarning)
        slides.predict_slide(declared_pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    with pytest.warns(slides.ResolutionMismatchWarning, match="16 px at 2 um/px.*32 px at 2 um/px"):
        slides.predict_slide(declared_pipeline, path, tile_size=TILE // 2, verbose=0)
    with pytest.warns(slides.ResolutionMismatchWarning, match="at 4 um/px"):
        slides.predict_slide(declared_pipeline, path, mpp=2 * MPP, verbose=0)


def test_backbone_runs_once_per_tile_with_gates(slide, pipeline):
    path, _ = slide
    backbone = pipeline[-1].module_.image_encoder.backbone
    seen = []
    handle = backbone.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    try:
        table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    finally:
        handle.remove()
    assert table["gate_image"].notna().all()
    assert sum(seen) == len(table) == len(CELLS)


def test_predict_proba_and_gates_is_predict_proba_and_gate_weights(pipeline, source):
    X, _ = source
    features = pipeline[:-1].transform(X[["image"]])
    classifier = pipeline[-1]
    proba, gates = classifier.predict_proba_and_gates(features)
    np.testing.assert_allclose(proba, classifier.predict_proba(features), rtol=0, atol=1e-7)
    pd.testing.assert_frame_equal(gates, classifier.gate_weights(features))


def test_predict_slide_keeps_the_caches_off_by_default(slide, pipeline, tmp_path):
    path, _ = slide
    cached = copy.deepcopy(pipeline)
    folder = tmp_path / "cache"
    cached.named_steps["radiomics"].set_params(cache=str(folder))
    slides.predict_slide(cached, path, mpp=MPP, tile_size=TILE, verbose=0)
    assert not folder.exists() or not any(folder.rglob("*.*"))
    assert cached.named_steps["radiomics"].cache == str(folder)   # the pipeline untouched
    slides.predict_slide(cached, path, mpp=MPP, tile_size=TILE, cache=str(folder), verbose=0)
    assert any(p.is_file() for p in folder.rglob("*"))


def test_cli_slide_takes_cache_and_n_jobs(slide, model_file, tmp_path):
    path, _ = slide
    folder = tmp_path / "cache"
    assert main(["slide", str(model_file), str(path), "--out", str(tmp_path / "out"), "-q",
                 "--n-jobs", "1", "--cache", str(folder)]) == 0
    assert any(p.is_file() for p in folder.rglob("*"))


class _Levels:
    def __init__(self, downsamples):
        self.level_downsamples = downsamples


def test_tiles_are_read_from_a_level_at_least_twice_finer_with_rounded_downsamples():
    levels = _Levels((1.0, 4.0002, 16.0011))      # an SVS states its 4x level as 4.0002
    assert slides.reading.LEVEL_OVERSAMPLING == 2.0
    assert slides.reading._level_for(levels, 8.0) == 1
    assert slides.reading._level_for(levels, 32.0) == 2
    assert slides.reading._level_for(levels, 16.0) == 1     # not the level at 16x itself
    assert slides.reading._level_for(levels, 4.0) == 0
    assert slides.reading._level_for(_Levels((1.0, 4.0, 16.0)), 7.9) == 0
    assert slides.reading._level_for(_Levels((1.0, 2.0, 4.0, 8.0)), 8.0) == 2


def test_a_pyramid_level_is_never_passed_on_as_it_is(slide, tmp_path):
    """Level 1 holds other pixels than level 0 subsampled: the tiles come from level 0."""
    from hiercls.features.resolution import resample_tile

    path, _ = slide
    level0 = np.asarray(slides.open_slide(path).read_region((0, 0), 0,
                                                            slides.open_slide(path).dimensions))[..., :3]
    fine = np.repeat(np.repeat(level0, 2, axis=0), 2, axis=1)
    slide_path = tmp_path / "odd-pyramid.tif"
    with tifffile.TiffWriter(slide_path) as writer:
        brighter = np.clip(fine[::2, ::2].astype(int) + 9, 0, 255).astype(np.uint8)
        for k, image in enumerate((fine, brighter)):
            per_cm = 1e4 / (MPP / 2 * 2 ** k)
            writer.write(image, tile=(64, 64), compression="zlib", photometric="rgb",
                         subfiletype=0 if k == 0 else 1, resolution=(per_cm, per_cm),
                         resolutionunit="CENTIMETER")
    X = slides.slide_tiles(slide_path, mpp=MPP, tile_size=TILE).reset_index()
    assert len(X) == len(CELLS)
    for image, x, y in zip(X["image"], X["x"], X["y"]):
        np.testing.assert_array_equal(image, resample_tile(fine[y:y + 2 * TILE, x:x + 2 * TILE],
                                                           size=TILE))


def test_slide_tiles_are_resampled_like_the_pipeline_resamples(slide, tmp_path):
    from hiercls.features.resolution import resample_tile

    path, _ = slide
    level0 = np.asarray(slides.open_slide(path).read_region((0, 0), 0,
                                                            slides.open_slide(path).dimensions))[..., :3]
    fine = np.repeat(np.repeat(level0, 8, axis=0), 8, axis=1)
    flat = write_slide(tmp_path / "fine8.tif", fine, MPP / 8, levels=1)
    X = slides.slide_tiles(flat, mpp=MPP, tile_size=TILE).reset_index()
    assert len(X) == len(CELLS)
    for image, x, y in zip(X["image"], X["x"], X["y"]):
        np.testing.assert_array_equal(image, resample_tile(fine[y:y + 8 * TILE, x:x + 8 * TILE],
                                                           size=TILE))


def test_a_fitted_pipeline_predicts_on_slide_tiles_unchanged(slide, pipeline):
    path, _ = slide
    X = slides.slide_tiles(path, mpp=MPP, tile_size=TILE)
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    np.testing.assert_allclose(pipeline.predict_proba(X), table[list(CLASS_NAMES)].to_numpy(),
                               rtol=0, atol=1e-6)


def test_maps_need_the_extent_of_each_tile(slide, pipeline):
    path, _ = slide
    table = slides.predict_slide(pipeline, path, mpp=MPP, tile_size=TILE, verbose=0)
    with pytest.raises(ValueError, match="extent"):
        slides.plot_slide_overlay(table.drop(columns="extent"), path)
    with pytest.raises(ValueError, match="extent"):
        slides.plot_slide_heatmap(table.drop(columns="extent"), path)
