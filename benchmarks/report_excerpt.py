"""The report excerpt of the README and docs, from ``hiercls evaluate`` with the default model.

Runs ``hiercls evaluate`` (leave one patient out, the default preset, features from the
cache) on the real tiles, then puts three of the figures its report writes side by side:
the ROC curves above, the necrotic fraction per patient and the gate's image share below.

    python benchmarks/report_excerpt.py                 # docs/images/report-excerpt.png
    python benchmarks/report_excerpt.py --run /tmp/run  # keep the evaluate run there

Writes docs/images/report-excerpt.png and benchmarks/results/report_excerpt.json (the run's
commit and settings).
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, REPO, run_info, write_results
from PIL import Image

from hiercls.cli import main as hiercls_main

OUT = REPO / "docs" / "images" / "report-excerpt.png"


def compose(run, out):
    """ROC curves on top, necrosis and gates below, on a white page."""
    top = Image.open(run / "roc-curves.png").convert("RGB")
    left = Image.open(run / "necrosis.png").convert("RGB")
    right = Image.open(run / "gate-weights.png").convert("RGB")
    width = max(top.width, left.width + right.width)
    page = Image.new("RGB", (width, top.height + max(left.height, right.height)), "white")
    page.paste(top, ((width - top.width) // 2, 0))
    page.paste(left, (0, top.height))
    page.paste(right, (left.width, top.height))
    page.save(out, optimize=True)
    return page.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="where hiercls evaluate writes")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    info = run_info()
    run = args.run or Path(tempfile.mkdtemp(prefix="hiercls-excerpt-"))
    started = time.perf_counter()
    argv = ["evaluate", str(DATA_DIR), "--out", str(run)] + (["--quiet"] if args.quiet else [])
    if hiercls_main(argv) != 0:
        raise SystemExit("hiercls evaluate failed")
    size = compose(run, OUT)
    write_results("report_excerpt", {"run": info, "command_run": "hiercls " + " ".join(argv),
                                     "image": str(OUT.relative_to(REPO)), "size": list(size),
                                     "wall_s": time.perf_counter() - started})
    if not args.quiet:
        print(f"wrote {OUT} ({size[0]} x {size[1]} px) from {run}")


if __name__ == "__main__":
    main()
