"""How long ``hiercls demo`` takes, run as a user runs it, on this machine.

The demo runs in a fresh interpreter (``python -m hiercls demo``, the package of this
checkout), so the time counts Python's start and the imports as a user waits for them.
The load average before and after says whether other jobs shared the machine: the same
demo takes several times longer on a busy one. Writes ``benchmarks/results/demo.json`` and
``demo.md``::

    python benchmarks/demo_time.py                       # the default demo, once
    python benchmarks/demo_time.py --repeats 2           # twice; each time is recorded
    python benchmarks/demo_time.py --quick --out /tmp/d  # a smoke run (tiny demo)

Arguments after ``--`` go to ``hiercls demo`` (e.g. ``-- --n-tiles 120``).
"""

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS_DIR, child_env, code_line, load_average, run_info, write_results  # noqa: E402

#: The quick mode's demo: a few tiny tiles, one epoch (figures not meaningful).
QUICK_DEMO = ["--n-tiles", "24", "--size", "32", "--max-epochs", "1"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="demo runs, one after the other")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny demo to check the script runs; needs --out")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {RESULTS_DIR})")
    parser.add_argument("--quiet", action="store_true")
    args, demo_args = parser.parse_known_args(argv)
    if demo_args[:1] == ["--"]:
        demo_args = demo_args[1:]
    args.demo_args = (QUICK_DEMO if args.quick else []) + demo_args
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.quick and args.out is None:
        parser.error("--quick writes meaningless figures: pass --out to a temporary folder")
    return args


def time_demo(demo_args):
    """One ``python -m hiercls demo`` in a fresh interpreter: seconds, CPU seconds, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_start = load_average()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hiercls", "demo", *demo_args], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"hiercls demo failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "load_average_start": load_start,
            "load_average_end": load_average(),
            "output_tail": done.stdout.strip().splitlines()[-12:]}


def markdown(payload):
    runs = payload["runs"]
    lines = ["# `hiercls demo`: time on this machine", "", code_line(payload) + ".", "",
             f"Machine: {payload['machine']['cpu']}, {payload['machine']['logical_cpus']} "
             f"logical CPUs. Demo arguments: `{' '.join(payload['demo_args']) or '(defaults)'}`.",
             "", "| run | wall | CPU | load average (1/5/15 min) at start | at end |",
             "|---|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        lines.append(f"| {i} | {run['wall_s']:.0f} s | {run['cpu_s']:.0f} s | "
                     f"{run['load_average_start']} | {run['load_average_end']} |")
    lines += ["", f"Median wall time {payload['median_wall_s']:.0f} s. The demo's last lines "
              "(the metrics table) of the last run:", "", "```",
              *runs[-1]["output_tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    info = run_info()
    runs = []
    for i in range(args.repeats):
        if not args.quiet:
            print(f"demo run {i + 1}/{args.repeats}: python -m hiercls demo "
                  f"{' '.join(args.demo_args)}", flush=True)
        runs.append(time_demo(args.demo_args))
        if not args.quiet:
            print(f"  {runs[-1]['wall_s']:.0f} s (load average at start "
                  f"{runs[-1]['load_average_start']})", flush=True)
    payload = {**info, "demo_args": args.demo_args, "quick": args.quick,
               "median_wall_s": statistics.median(r["wall_s"] for r in runs), "runs": runs}
    text = markdown(payload)
    paths = write_results("demo", payload, text, out_dir=args.out)
    if not args.quiet:
        print(text)
        print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
