"""Whole slides (issue 12, phase 1): throughput, memory, and tiles at twice the resolution.

A slide is assembled from tiles on white glass and written as a pyramidal tiled TIFF
(lossless deflate, resolution tags of the model's 2.0 um/px), the same tiles also being
JPEG files; then:

* **throughput**: ``predict_slide`` on the slide (read, tissue, radiomics, backbone,
  heads) against ``pipeline.predict_proba`` on the same tiles from their JPEG files, in
  tiles per second; target slide >= 0.9x files;
* **memory**: the peak RSS (VmHWM) of a fresh process predicting a slide, and one 4x
  larger; target <= 1.2x;
* **resolution**: the same slide at twice the resolution (each pixel repeated, declared
  1.0 um/px), read through its pyramid and from level 0 only (each tile resampled);
  agreement of the predicted class with the slide at the model's resolution.

With the real tiles (``$HIERCLS_DATA_DIR`` or ../shared) the slide holds Case-4's tiles and
the model, unless ``--model`` gives a saved one, is a small one trained on the other
patients; ``--quick`` uses generated tiles and a tiny model (a smoke test, figures not
meaningful). Not measured here (phase 2): the backbone's bare forward rate (the limit) and
the number of views averaged at prediction.

Run from the repository root::

    python benchmarks/slide_speed.py                    # writes benchmarks/results/slide_speed.*
    python benchmarks/slide_speed.py --quick --results-dir /tmp/x
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import common

_CHILD = r"""
import json, sys, joblib
from hiercls import slides
pipe = joblib.load(sys.argv[1])
table = slides.predict_slide(pipe, sys.argv[2], mpp=float(sys.argv[3]), tile_size=int(sys.argv[4]),
                             batch_size=int(sys.argv[5]), verbose=0)
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"tiles": len(table), "peak_rss_mib": int(peak) / 1024}))
"""


def write_slide(path, image, mpp, levels=4):
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for k in range(levels):
            per_cm = 1e4 / (mpp * 2 ** k)
            writer.write(image, tile=(256, 256), compression="zlib", photometric="rgb",
                         resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                         subfiletype=0 if k == 0 else 1)
            image = image[::2, ::2]
            if min(image.shape[:2]) < 64:
                break
    return path


def assemble(tiles, n, columns):
    """``n`` tiles (cycling through ``tiles``) in a grid of ``columns``, every 7th cell glass."""
    side = tiles[0].shape[0]
    cells, k = [], 0
    while len(cells) < n:
        if k % 7 != 3:
            cells.append(divmod(k, columns))
        k += 1
    rows = cells[-1][0] + 1
    canvas = np.full((rows * side, columns * side, 3), 255, np.uint8)
    for j, (r, c) in enumerate(cells):
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = tiles[j % len(tiles)]
    return canvas, cells


def load_data(quick):
    from hiercls.datasets import load_osteosarcoma_ut, make_synthetic_tiles

    if quick or not (common.DATA_DIR / "Training-Set-1").is_dir():
        X, y, groups = make_synthetic_tiles(n_tiles=60, n_patients=4, size=32, random_state=0)
        return X, pd.Series(np.asarray(y)), pd.Series(np.asarray(groups)), "synthetic"
    X, y, groups = load_osteosarcoma_ut(common.DATA_DIR)
    X = X.assign(image=[str(p) for p in X["image"]])
    return X, y, groups, str(common.DATA_DIR)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a pipeline saved by 'hiercls fit' (default: train one)")
    parser.add_argument("--tiles", type=int, default=1000, help="tissue tiles of the slide")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--results-dir", help="where to write (default: benchmarks/results)")
    args = parser.parse_args()
    if args.results_dir:
        common.RESULTS_DIR = Path(args.results_dir)
    import joblib

    from hiercls import CLASS_NAMES, make_fusion_pipeline, slides
    from hiercls.images import read_tile

    started = time.perf_counter()
    X, y, groups, data = load_data(args.quick)
    test = (groups == "Case-4").to_numpy() if "Case-4" in set(groups) else (groups == groups.iloc[0]).to_numpy()
    n_tiles = 40 if args.quick else args.tiles
    work = Path(tempfile.mkdtemp(prefix="slide-speed-"))
    if args.model:
        model_path = Path(args.model)
        pipe = joblib.load(model_path)
    else:
        params = (dict(backbone="test_efficientnet", image_size=32, embed_dim=16, max_epochs=1)
                  if args.quick else dict(backbone="efficientnet_b0", image_size=128,
                                          embed_dim=64, max_epochs=2))
        pipe = make_fusion_pipeline(**params, batch_size=16, patience=None, random_state=0,
                                    verbose=0, radiomics__mask="tissue", radiomics__cache=None)
        pipe.fit(X.loc[~test, ["image"]], y[~test])
        model_path = work / "model.joblib"
        joblib.dump(pipe, model_path)

    # The slide and, beside it, the same tiles as JPEG files.
    tiles = [read_tile(t) for t in X.loc[test, "image"]]
    side = tiles[0].shape[0]
    mpp = slides.DEFAULT_RESOLUTION[0]
    files = X.loc[test, "image"].tolist()
    if not isinstance(files[0], str):  # generated tiles: write them as JPEG files
        from PIL import Image
        files = []
        for k, tile in enumerate(tiles):
            files.append(str(work / f"tile-{k}.jpg"))
            Image.fromarray(tile).save(files[-1], quality=90)
        tiles = [read_tile(f) for f in files]
    columns = max(4, int(np.sqrt(n_tiles)))
    canvas, cells = assemble(tiles, n_tiles, columns)
    slide = write_slide(work / "slide.tif", canvas, mpp)
    file_tiles = pd.DataFrame({"image": [files[j % len(files)] for j in range(len(cells))]})

    def timed(function):
        begin = time.perf_counter()
        out = function()
        return out, time.perf_counter() - begin

    table, slide_s = timed(lambda: slides.predict_slide(pipe, slide, mpp=mpp, tile_size=side,
                                                        batch_size=args.batch_size,
                                                        gates=False, verbose=0))
    proba, files_s = timed(lambda: pipe.predict_proba(file_tiles))
    throughput = {"tiles": len(table), "slide_tiles_per_s": len(table) / slide_s,
                  "files_tiles_per_s": len(file_tiles) / files_s}
    throughput["slide_over_files"] = throughput["slide_tiles_per_s"] / throughput["files_tiles_per_s"]

    # Memory: fresh processes, the slide and one 4x larger.
    big_canvas, _ = assemble(tiles, 4 * n_tiles, 2 * columns)
    big = write_slide(work / "big.tif", big_canvas, mpp)
    memory = {}
    for name, path in (("slide", slide), ("slide_4x", big)):
        done = subprocess.run([sys.executable, "-c", _CHILD, str(model_path), str(path), str(mpp),
                               str(side), str(args.batch_size)], capture_output=True, text=True,
                              cwd=common.REPO, check=True,
                              env={**os.environ, "PYTHONPATH": str(common.REPO)})
        memory[name] = json.loads(done.stdout.strip().splitlines()[-1])
    memory["ratio_4x"] = memory["slide_4x"]["peak_rss_mib"] / memory["slide"]["peak_rss_mib"]

    # Twice the resolution, declared.
    fine = np.repeat(np.repeat(canvas, 2, axis=0), 2, axis=1)
    resolution = {}
    for name, levels in (("pyramid", 4), ("level0_only", 1)):
        path = write_slide(work / f"fine-{name}.tif", fine, mpp / 2, levels=levels)
        other = slides.predict_slide(pipe, path, mpp=mpp, tile_size=side, gates=False, verbose=0)
        same = (other[["x", "y"]].to_numpy() == 2 * table[["x", "y"]].to_numpy()).all()
        resolution[name] = {
            "same_grid": bool(same and len(other) == len(table)),
            "agreement": float((other["predicted"].to_numpy() == table["predicted"].to_numpy()).mean()),
            "max_abs_proba_diff": float(np.abs(other[list(CLASS_NAMES)].to_numpy()
                                               - table[list(CLASS_NAMES)].to_numpy()).max()),
        }

    info = common.run_info()
    payload = {"run": info, "data": data, "quick": args.quick, "model": str(model_path),
               "tile_size": side, "mpp": mpp, "batch_size": args.batch_size,
               "throughput": throughput, "memory": memory, "resolution": resolution,
               "seconds": round(time.perf_counter() - started, 1)}
    md = [f"# Whole slides: throughput, memory, resolution{' (quick: not meaningful)' if args.quick else ''}",
          "", common.code_line(info), "",
          f"Data: {data}; {len(table)} tissue tiles of {side} px at {mpp} um/px; batch {args.batch_size}.",
          "", "| measure | value | target |", "|---|---|---|",
          f"| slide, tiles/s | {throughput['slide_tiles_per_s']:.2f} | |",
          f"| JPEG files, tiles/s | {throughput['files_tiles_per_s']:.2f} | |",
          f"| slide / files | {throughput['slide_over_files']:.2f} | >= 0.9 |",
          f"| peak RSS, slide (MiB) | {memory['slide']['peak_rss_mib']:.0f} | |",
          f"| peak RSS, 4x slide (MiB) | {memory['slide_4x']['peak_rss_mib']:.0f} | |",
          f"| 4x / 1x peak RSS | {memory['ratio_4x']:.2f} | <= 1.2 |"]
    for name, r in resolution.items():
        md.append(f"| 2x resolution ({name}): agreement | {r['agreement']:.3f} "
                  f"(same grid: {r['same_grid']}) | >= 0.95 |")
    md += ["", "Not measured (phase 2): the backbone's bare forward rate and the views "
               "averaged at prediction."]
    for path in common.write_results("slide_speed", payload, "\n".join(md)):
        print(f"wrote {path}")
    print("\n".join(md))


if __name__ == "__main__":
    main()
