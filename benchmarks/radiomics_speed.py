"""Agreement and speed of the fast radiomics backend against PyRadiomics, on real tiles.

Writes ``benchmarks/results/radiomics_speed.md`` and ``.json`` (same figures, plus the
commit and whether the working tree was dirty, from ``common.run_info``). Run from the repository root::

    python benchmarks/radiomics_speed.py                    # everything (about an hour)
    python benchmarks/radiomics_speed.py --quick --out-dir /tmp/rs   # a smoke run
    python benchmarks/radiomics_speed.py --skip-agreement   # speed only

Agreement: every tile x {gray, hematoxylin} x {full, tissue} mask, PyRadiomics' value
against the fast backend's, per feature. PyRadiomics' reference values are cached
(``--cache-dir``, default ``~/.cache/hiercls-benchmarks/``, outside the repository), keyed
by the tile's content, the bin width and the PyRadiomics version, so a re-run only pays
for the tiles it has not seen. To avoid computing the mask-only shape features four times,
the reference runs PyRadiomics' own steps as its extractor does (getMask, checkMask,
cropToTumorMask, then RadiomicsShape2D once per mask and RadiomicsFirstOrder once per
channel and mask, with the extractor's settings); the run first checks that this gives
exactly what ``extract_pyradiomics`` gives.

Speed: the per-tile time includes reading the JPEG, the gray channel and the mask, for
both backends, one process; the backends take turns on each tile, ``--repeats`` times,
and the best time of each counts. The full-set time runs the fast backend over the tiles in 2
worker processes (joblib), in a fresh interpreter whose peak memory is measured.
"""

import argparse
import hashlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, RESULTS_DIR, child_env, code_line, load_average, run_info, write_results  # noqa: E402

from hiercls.data.images import read_tile, tile_digest  # noqa: E402
from hiercls.features.radiomics.channels import to_channel  # noqa: E402
from hiercls.features.radiomics.fast_backend import extract_fast  # noqa: E402
from hiercls.features.radiomics.masks import make_mask  # noqa: E402
from hiercls.features.radiomics.names import FEATURE_NAMES, FIRSTORDER_FEATURES, SHAPE2D_FEATURES  # noqa: E402
from hiercls.features.radiomics.pyradiomics_backend import PYRADIOMICS_SETTINGS, extract_pyradiomics  # noqa: E402

#: PyRadiomics' reference values, outside the repository so that git never sees them.
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "hiercls-benchmarks" / "pyradiomics_reference"
)
RTOL, ATOL = 1e-6, 1e-9
CHANNELS = ("gray", "hematoxylin")
MASKS = ("full", "tissue")
COMBOS = [(c, m) for c in CHANNELS for m in MASKS]


# --------------------------------------------------------------------------------------
# PyRadiomics reference, split so that shape2D runs once per (tile, mask)
# --------------------------------------------------------------------------------------


def _quiet_radiomics():
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    warnings.simplefilter("ignore")


def reference_split(channels, regions, bin_width):
    """PyRadiomics' features for every (channel, mask), as its extractor computes them.

    Parameters
    ----------
    channels : dict of name -> ndarray (H, W) float
    regions : dict of name -> ndarray (H, W) bool
    bin_width : float

    Returns
    -------
    dict of (channel, mask) -> ndarray (29,)
    """
    import SimpleITK as sitk
    from radiomics import featureextractor, imageoperations
    from radiomics.firstorder import RadiomicsFirstOrder
    from radiomics.shape2D import RadiomicsShape2D

    _quiet_radiomics()
    # The extractor's own settings (defaults included), as execute() passes them on.
    settings = featureextractor.RadiomicsFeatureExtractor(
        binWidth=bin_width, **PYRADIOMICS_SETTINGS
    ).settings.copy()
    images = {
        name: sitk.GetImageFromArray(np.asarray(ch, dtype=np.float64)) for name, ch in channels.items()
    }
    out = {}
    for mask_name, region in regions.items():
        mask = sitk.GetImageFromArray(np.asarray(region, dtype=np.uint8))
        mask = imageoperations.getMask(mask, **settings)
        any_image = next(iter(images.values()))
        bounding_box, corrected = imageoperations.checkMask(any_image, mask, **settings)
        assert corrected is None
        cropped_image, cropped_mask = imageoperations.cropToTumorMask(any_image, mask, bounding_box)
        shape = RadiomicsShape2D(cropped_image, cropped_mask, **settings)
        for name in SHAPE2D_FEATURES:
            shape.enableFeatureByName(name)
        shape_values = shape.execute()
        shape_vector = [float(shape_values[name]) for name in SHAPE2D_FEATURES]
        for channel_name, image in images.items():
            cropped_image, cropped_mask = imageoperations.cropToTumorMask(
                image, mask, bounding_box, padDistance=0
            )
            first = RadiomicsFirstOrder(cropped_image, cropped_mask, **settings)
            for name in FIRSTORDER_FEATURES:
                first.enableFeatureByName(name)
            first_values = first.execute()
            vector = [float(first_values[name]) for name in FIRSTORDER_FEATURES] + shape_vector
            out[channel_name, mask_name] = np.array(vector, dtype=np.float64)
    return out


def _tile_inputs(path):
    rgb = read_tile(path)
    gray = to_channel(rgb, "gray")
    channels = {"gray": gray, "hematoxylin": to_channel(rgb, "hematoxylin")}
    regions = {}
    fell_back = {}
    for mask_name in MASKS:
        regions[mask_name], fell_back[mask_name] = make_mask(gray, mask_name)
    return channels, regions, fell_back


def agreement_unit(path, cache_dir, bin_width):
    """Reference (cached) and fast features of one tile for the four combinations."""
    import radiomics

    channels, regions, fell_back = _tile_inputs(path)
    key = f"{tile_digest(path)}|bw={bin_width}|radiomics={radiomics.__version__}"
    cache_file = Path(cache_dir) / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")
    seconds = 0.0
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            ref = stored["ref"]
    else:
        start = time.perf_counter()
        split = reference_split(channels, regions, bin_width)
        seconds = time.perf_counter() - start
        ref = np.stack([split[c] for c in COMBOS])
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, ref=ref, key=key)
        os.replace(tmp, cache_file)  # atomic: an interrupted run leaves no half file
    fast = np.stack([extract_fast(channels[c], regions[m], bin_width=bin_width) for c, m in COMBOS])
    return {"ref": ref, "fast": fast, "fell_back": fell_back, "ref_seconds": seconds}


def run_agreement(paths, args):
    from joblib import Parallel, delayed

    cache_dir = Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The split reference must be the extractor's computation, to the bit.
    check = []
    for path in paths[:2]:
        channels, regions, _ = _tile_inputs(path)
        split = reference_split(channels, regions, args.bin_width)
        for c, m in COMBOS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                whole = extract_pyradiomics(channels[c], regions[m], bin_width=args.bin_width)
            check.append(bool(np.array_equal(whole, split[c, m], equal_nan=True)))
    print(f"[agreement] split reference == extract_pyradiomics on {len(check)} cases: {all(check)}",
          file=sys.stderr, flush=True)

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    start = time.perf_counter()
    for attempt in range(1, 4):
        results = []
        try:
            jobs = Parallel(n_jobs=args.n_jobs, batch_size=1, return_as="generator_unordered")(
                delayed(agreement_unit)(str(p), str(cache_dir), args.bin_width) for p in paths
            )
            for i, result in enumerate(jobs, 1):
                results.append(result)
                if i % 25 == 0 or i == len(paths):
                    elapsed = time.perf_counter() - start
                    print(f"[agreement] {i}/{len(paths)} tiles, {elapsed:.0f} s",
                          file=sys.stderr, flush=True)
            break
        except TerminatedWorkerError as exc:
            # A worker killed from outside (a shared machine): the finished tiles are
            # cached, so starting over only repeats the cheap part.
            print(f"[agreement] attempt {attempt}: {exc!s:.120}; retrying", file=sys.stderr, flush=True)
    else:
        raise RuntimeError("agreement workers kept being terminated")

    ref = np.stack([r["ref"] for r in results])  # (tiles, combos, 29)
    fast = np.stack([r["fast"] for r in results])
    abs_err = np.abs(fast - ref)
    both_nan = np.isnan(fast) & np.isnan(ref)
    abs_err[both_nan] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(abs_err == 0, 0.0, abs_err / np.abs(ref))
    ok = np.isclose(fast, ref, rtol=RTOL, atol=ATOL, equal_nan=True)
    per_feature = {}
    for j, name in enumerate(FEATURE_NAMES):
        per_feature[name] = {
            f"{c}/{m}": {
                "max_rel_err": float(np.nanmax(rel_err[:, k, j])),
                "max_abs_err": float(np.nanmax(abs_err[:, k, j])),
                "violations": int((~ok[:, k, j]).sum()),
            }
            for k, (c, m) in enumerate(COMBOS)
        }
    return {
        "tiles": len(results),
        "cases": int(ok.shape[0] * ok.shape[1]),
        "values_compared": int(ok.size),
        "violations": int((~ok).sum()),
        "nan_in_reference": int(np.isnan(ref).sum()),
        "tissue_mask_fell_back": int(sum(r["fell_back"]["tissue"] for r in results)),
        "split_reference_equals_extractor": all(check),
        "split_reference_checked_cases": len(check),
        "reference_seconds_this_run": float(sum(r["ref_seconds"] for r in results)),
        "reference_cached_tiles_reused": int(sum(r["ref_seconds"] == 0.0 for r in results)),
        "wall_seconds": time.perf_counter() - start,
        "max_rel_err_overall": float(np.nanmax(rel_err)),
        "per_feature": per_feature,
    }


# --------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------


def _time_tile(source, mask_name, extract):
    """Seconds from a tile (path or RGB array) to its 29 features of the gray channel.

    Returns wall seconds in all, wall seconds of the extraction alone, and CPU seconds
    of this process in all (less sensitive than wall time to other work on the machine).
    """
    cpu = time.process_time()
    start = time.perf_counter()
    gray = to_channel(read_tile(source), "gray")
    region, _ = make_mask(gray, mask_name)
    middle = time.perf_counter()
    extract(gray, region)
    end = time.perf_counter()
    return end - start, end - middle, time.process_time() - cpu


def _pyradiomics_extract(values, region):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_pyradiomics(values, region)


BACKENDS = {"pyradiomics": _pyradiomics_extract, "fast": extract_fast}


def run_per_tile(paths, label, repeats=3):
    """Median per-tile seconds for each backend and mask over the same tiles.

    The backends take turns on each tile (so a change in the machine's load hits both),
    each ``repeats`` times; a tile's time is the best of its repeats (timeit's rule: other
    work on the machine only ever adds time).
    """
    _quiet_radiomics()
    for backend in BACKENDS.values():  # warm-up: imports, first-call costs
        _time_tile(paths[0], "full", backend)
    out = {}
    for mask_name in MASKS:
        timings = {name: {"total": [], "extract": [], "cpu": []} for name in BACKENDS}
        for path in paths:
            best = {name: (np.inf, np.inf, np.inf) for name in BACKENDS}
            for _ in range(repeats):
                for name, backend in BACKENDS.items():
                    measured = _time_tile(path, mask_name, backend)
                    best[name] = tuple(min(a, b) for a, b in zip(best[name], measured))
            for name, (total, extract, cpu) in best.items():
                timings[name]["total"].append(total)
                timings[name]["extract"].append(extract)
                timings[name]["cpu"].append(cpu)
        for name, measured in timings.items():
            totals = measured["total"]
            out[f"{name}/{mask_name}"] = {
                "median_s": statistics.median(totals),
                "median_extract_only_s": statistics.median(measured["extract"]),
                "median_cpu_s": statistics.median(measured["cpu"]),
                "mean_s": statistics.fmean(totals),
                "max_s": max(totals),
                "tiles": len(paths),
                "repeats": repeats,
            }
            print(f"[speed {label}] {name}/{mask_name}: median {statistics.median(totals):.4f} s "
                  f"(max {max(totals):.3f} s)", file=sys.stderr, flush=True)
    for mask_name in MASKS:
        slow, fast = out[f"pyradiomics/{mask_name}"], out[f"fast/{mask_name}"]
        out[f"speedup/{mask_name}"] = slow["median_s"] / fast["median_s"]
        out[f"speedup_extract_only/{mask_name}"] = (
            slow["median_extract_only_s"] / fast["median_extract_only_s"]
        )
        out[f"speedup_cpu/{mask_name}"] = slow["median_cpu_s"] / fast["median_cpu_s"]
    return out


def _upsampled(path, size):
    from PIL import Image

    rgb = read_tile(path)
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS))


def run_sizes(paths, sizes):
    """Per-tile seconds at several tile sizes (Lanczos upsampling), both backends."""
    _quiet_radiomics()
    out = {}
    for size in sizes:
        tiles = [_upsampled(p, size) if size != 512 else read_tile(p) for p in paths]
        for mask_name in MASKS:
            for name, backend in BACKENDS.items():
                times = [_time_tile(tile, mask_name, backend)[2] for tile in tiles]
                out[f"{size}/{name}/{mask_name}"] = {
                    "median_s": statistics.median(times), "times_s": times,
                }
                print(f"[size {size}{'' if size == 512 else ', 512 px upsampled'}] {name}/{mask_name}: {[round(t, 3) for t in times]}",
                      file=sys.stderr, flush=True)
    return out


FULL_SET_CHILD = textwrap.dedent(
    """
    import json, sys, time, threading, resource
    import psutil
    from joblib import Parallel, delayed
    from hiercls.features.radiomics.transformer import tile_radiomics

    def one(path):
        # What RadiomicsTransformer(backend="fast") runs per tile.
        return tile_radiomics(path, channel="gray", mask="tissue", bin_width=25.0,
                              backend="fast")[0]

    def warm(seconds):
        # Each worker imports hiercls.features.radiomics once (scikit-learn, scikit-image, pandas).
        time.sleep(seconds)
        return None

    paths = json.load(sys.stdin)
    me = psutil.Process()
    peak = [0]
    done = threading.Event()
    def sample():
        while not done.is_set():
            try:
                total = me.memory_info().rss + sum(
                    c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            peak[0] = max(peak[0], total)
            time.sleep(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cold = time.perf_counter()
    Parallel(n_jobs={n_jobs})(delayed(warm)(0.5) for _ in range(2 * {n_jobs}))
    Parallel(n_jobs={n_jobs})(delayed(one)(p) for p in paths[:2 * {n_jobs}])
    start = time.perf_counter()
    # The same (reused) worker processes, now started and with the package imported.
    rows = Parallel(n_jobs={n_jobs}, batch_size=8)(delayed(one)(p) for p in paths)
    wall = time.perf_counter() - start
    done.set(); sampler.join()
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)  # so that getrusage sees the workers
    finite = bool(all(map(lambda r: r.shape == (29,), rows)))
    print(json.dumps({{
        "wall_s": wall, "startup_s": start - cold, "tiles": len(rows), "rows_ok": finite,
        "peak_rss_sum_sampled_mb": peak[0] / 2**20,
        "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "maxrss_largest_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }}))
    """
)


def run_full_set(paths, n_jobs):
    """Wall time and peak memory of the fast backend over ``paths``, in a fresh process."""
    code = FULL_SET_CHILD.format(n_jobs=n_jobs)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps([str(p) for p in paths]),
        capture_output=True, text=True, check=True, env=child_env(),
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start  # interpreter start included
    result["n_jobs"] = n_jobs
    print(f"[full set] {result}", file=sys.stderr, flush=True)
    return result


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _fmt_s(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown(report):
    env = report["environment"]
    lines = [
        "# Radiomics backends: agreement and speed",
        "",
        f"Generated by `benchmarks/radiomics_speed.py`: {code_line(report)}.",
        f"Machine: {env['cpu_count']} CPUs, {env['platform']}, Python {env['python']}, numpy "
        f"{env['numpy']}, radiomics {env['radiomics']}. Load average at start "
        f"{env['loadavg_start']}, at end {env['loadavg_end']} (the machine is shared: timings "
        "carry that noise).",
        "",
    ]
    agreement = report.get("agreement")
    if agreement:
        lines += [
            "## Agreement with PyRadiomics",
            "",
            f"{agreement['tiles']} tiles x 2 channels x 2 masks = {agreement['cases']} cases, "
            f"{agreement['values_compared']} values. Tolerance: relative {RTOL:g}, or absolute "
            f"{ATOL:g} near 0; NaN must match NaN.",
            "",
            f"- **Violations: {agreement['violations']}** of {agreement['values_compared']}; "
            f"largest relative error {agreement['max_rel_err_overall']:.2e}.",
            f"- NaN values in the reference: {agreement['nan_in_reference']}; tissue masks that "
            f"fell back to the whole tile: {agreement['tissue_mask_fell_back']}.",
            f"- Reference computed with PyRadiomics' feature classes (shape2D once per tile "
            f"and mask), checked equal to `extract_pyradiomics` on "
            f"{agreement['split_reference_checked_cases']} cases: "
            f"{agreement['split_reference_equals_extractor']}.",
            f"- PyRadiomics time spent in this run: {agreement['reference_seconds_this_run']:.0f} s "
            f"of CPU work ({agreement['reference_cached_tiles_reused']} tiles reused from the "
            f"cache); wall {agreement['wall_seconds']:.0f} s with {report['args']['n_jobs']} "
            "processes.",
            "",
            "Largest relative error (violations) per feature:",
            "",
            "| feature | " + " | ".join(f"{c}/{m}" for c, m in COMBOS) + " |",
            "|---|" + "---|" * len(COMBOS),
        ]
        for name, per in agreement["per_feature"].items():
            cells = [f"{v['max_rel_err']:.1e} ({v['violations']})" for v in per.values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    speed = report.get("per_tile")
    if speed:
        n = speed["pyradiomics/full"]["tiles"]
        lines += [
            "## Per-tile time, one process",
            "",
            f"{n} random tiles (seed {report['args']['seed']}), gray channel, 29 features; "
            "the time includes reading the JPEG, the channel and the mask for both backends "
            "(extraction alone in brackets). The backends take turns on each tile, "
            f"{speed['pyradiomics/full'].get('repeats', 1)} times each, and a tile counts its best "
            "time (other work on the machine only adds time); the table gives medians over the "
            "tiles. The CPU-time columns count this process's CPU seconds.",
            "",
            "| mask | PyRadiomics median | fast median | speed-up | target | CPU: PyRadiomics | CPU: fast | CPU speed-up |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mask_name, target in (("full", 10), ("tissue", 100)):
            slow, fast = speed[f"pyradiomics/{mask_name}"], speed[f"fast/{mask_name}"]
            ratio = speed[f"speedup/{mask_name}"]
            lines.append(
                f"| {mask_name} | {_fmt_s(slow['median_s'])} ({_fmt_s(slow['median_extract_only_s'])}) "
                f"| {_fmt_s(fast['median_s'])} ({_fmt_s(fast['median_extract_only_s'])}) "
                f"| **{ratio:.0f}x faster** ({speed[f'speedup_extract_only/{mask_name}']:.0f}x) "
                f"| >= {target}x: {'met' if ratio >= target else 'MISSED'} "
                f"| {_fmt_s(slow['median_cpu_s'])} | {_fmt_s(fast['median_cpu_s'])} "
                f"| {speed[f'speedup_cpu/{mask_name}']:.0f}x |"
            )
        lines += [
            "",
            f"Slowest PyRadiomics tile with the tissue mask: "
            f"{_fmt_s(speed['pyradiomics/tissue']['max_s'])}; fast backend: "
            f"{_fmt_s(speed['fast/tissue']['max_s'])}.",
            "",
        ]
    full = report.get("full_set")
    if full:
        lines += [
            "## Whole data set, fast backend",
            "",
            f"{full['tiles']} tiles, gray channel, tissue mask, 29 features, "
            f"{full['n_jobs']} worker processes (joblib), JPEG decoding included:",
            "",
            f"- **wall time {full['wall_s']:.1f} s** with the worker processes started "
            f"(target <= 30 s: {'met' if full['wall_s'] <= 30 else 'MISSED'});",
            f"- starting the {full['n_jobs']} workers, which import `hiercls.features.radiomics` (the "
            f"package's top level imports torch and the rest lazily), took "
            f"{full['startup_s']:.1f} s more; {full['process_wall_s']:.1f} s in all with the "
            f"parent interpreter's start (target: "
            f"{'met' if full['process_wall_s'] <= 30 else 'missed'} even counting these);",
            f"- peak memory: {full['peak_rss_sum_sampled_mb']:.0f} MB summed over the parent "
            f"and its workers (sampled every 20 ms); largest single process "
            f"{max(full['maxrss_self_mb'], full['maxrss_largest_child_mb']):.0f} MB (getrusage).",
            "",
        ]
    sizes = report.get("sizes")
    if sizes:
        size_list = report["args"]["sizes"]
        n = len(next(iter(sizes.values()))["times_s"])
        lines += [
            "## Cost against tile size (larger tiles are upsampled 512 px tiles)",
            "",
            f"{n} random 512 px tile(s), decoded once, then upsampled with PIL's Lanczos filter "
            "for the larger sizes (the data hold no larger tiles); gray channel; median per-tile CPU time, channel and mask "
            "included (no JPEG decoding at any size).",
            "",
            "| size | PyRadiomics full | fast full | PyRadiomics tissue | fast tissue |",
            "|---|---|---|---|---|",
        ]
        for size in size_list:
            cells = [_fmt_s(sizes[f"{size}/{b}/{m}"]["median_s"]) for m in MASKS for b in BACKENDS]
            label = f"{size} px" if size == 512 else f"{size} px (512 px upsampled)"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        base = size_list[0]
        for size in size_list[1:]:
            growth = [
                f"{b}/{m} {sizes[f'{size}/{b}/{m}']['median_s'] / sizes[f'{base}/{b}/{m}']['median_s']:.1f}x"
                for m in MASKS for b in BACKENDS
            ]
            lines.append("")
            lines.append(f"Growth from {base} to {size} px ({(size / base) ** 2:.0f}x the pixels): "
                         + ", ".join(growth) + ".")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--tiles", type=int, default=None,
                        help="random subsample for the agreement and whole-set runs (default all)")
    parser.add_argument("--speed-tiles", type=int, default=24,
                        help="random tiles for the per-tile timing (default 24)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per tile and backend; the best counts (default 3)")
    parser.add_argument("--size-tiles", type=int, default=3,
                        help="random tiles for the tile-size timing (default 3; 0 skips it)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--bin-width", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--out-dir", default=str(RESULTS_DIR),
                        help="where the results go (a temporary folder for quick runs)")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 8 tiles, 2 timed, 1 repeat, 1 tile upsampled")
    args = parser.parse_args(argv)
    if args.quick:
        args.tiles, args.speed_tiles, args.repeats, args.size_tiles = 8, 2, 1, 1

    data_dir = Path(args.data_dir)
    manifest = pd.read_csv(data_dir / "manifest.csv")
    all_paths = [data_dir / p for p in manifest["path"]]
    rng = np.random.default_rng(args.seed)
    if args.tiles is not None and args.tiles < len(all_paths):
        chosen = sorted(rng.choice(len(all_paths), args.tiles, replace=False))
        paths = [all_paths[i] for i in chosen]
    else:
        paths = all_paths
    speed_rng = np.random.default_rng(args.seed + 1)
    speed_paths = [all_paths[i] for i in speed_rng.choice(len(all_paths), args.speed_tiles, replace=False)]
    size_paths = [all_paths[i] for i in speed_rng.choice(len(all_paths), args.size_tiles, replace=False)]

    import radiomics

    info = run_info(" ".join(["python", "benchmarks/radiomics_speed.py", *(argv or sys.argv[1:])]))
    machine = info["machine"]
    report = {
        **info,
        "args": vars(args),
        "environment": {
            "cpu_count": machine["logical_cpus"], "platform": machine["platform"],
            "python": machine["python"], "numpy": machine["numpy"],
            "radiomics": radiomics.__version__,
            "loadavg_start": load_average(),
        },
        "tolerance": {"rtol": RTOL, "atol": ATOL},
    }
    if not args.skip_agreement:
        report["agreement"] = run_agreement(paths, args)
    if not args.skip_speed:
        report["per_tile"] = run_per_tile(speed_paths, "per tile", repeats=args.repeats)
        report["full_set"] = run_full_set(paths, args.n_jobs)
        if args.size_tiles > 0:
            report["sizes"] = run_sizes(size_paths, args.sizes)
    report["environment"]["loadavg_end"] = load_average()
    report["environment"]["maxrss_benchmark_process_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )

    text = markdown(report)
    write_results("radiomics_speed", report, text, out_dir=args.out_dir)
    print(text)


if __name__ == "__main__":
    main()
