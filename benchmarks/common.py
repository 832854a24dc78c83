"""What every benchmark records beside its figures: the code it ran, the machine, the data.

A benchmark imports this module (it sits beside them: ``from common import run_info``)
and writes ``run_info()`` into its results file, so that each figure names the commit it
measured and whether the working tree had uncommitted changes. It also holds what
several benchmarks would otherwise each define: the results and data folders, protocol
A's test patient, the load average, a child interpreter's environment, the mean ± sd.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: The repository root (the folder above ``benchmarks/``).
REPO = Path(__file__).resolve().parents[1]
#: Where results files are written.
RESULTS_DIR = REPO / "benchmarks" / "results"
#: The real tiles: ``$HIERCLS_DATA_DIR``, else ``../shared/data/osteosarcoma-ut-512``.
DATA_DIR = Path(os.environ.get("HIERCLS_DATA_DIR")
                or REPO.parent / "shared" / "data" / "osteosarcoma-ut-512")
#: The sample of original 1024 px tiles (six slides of Case-3, Case-48, P9) whose 512 px
#: copies are in :data:`DATA_DIR`: ``$HIERCLS_ORIGINALS_DIR``, else beside it.
ORIGINALS_DIR = Path(os.environ.get("HIERCLS_ORIGINALS_DIR")
                     or DATA_DIR.parent / "osteosarcoma-ut-1024-sample")
#: Protocol A's test patient, the paper's: the tiles every benchmark holds out.
TEST_PATIENT = "Case-4"

# Benchmarks run from a checkout: the package beside them, not an older installed copy.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


#: Tracked paths that benchmarks write: changes there do not make a run dirty.
OUTPUTS = ("benchmarks/results/", "README.md", "docs/")


def git(*command):
    """The output of a git command in the repository, or None where git cannot answer."""
    try:
        # Only the trailing newline goes: porcelain status lines start with a space (" M x").
        return subprocess.run(["git", *command], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return None


def code_state():
    """``{"commit", "dirty", "dirty_files"}``: HEAD and the tracked files changed since.

    Untracked files do not count (caches), nor what benchmarks write themselves: the
    results files and the README figures rendered from them, so that benchmarks run one
    after another on one commit all record it as clean. A change to any other tracked file
    counts, since a benchmark may measure code outside the package too.
    """
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines()
               if not line[3:].startswith(OUTPUTS)]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "dirty_files": changed}


def machine():
    """The CPU, core count, platform and the versions of the libraries that set the speed."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    for name in ("numpy", "torch", "skorch", "timm", "sklearn"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", None)
    return info


def load_average():
    """The 1, 5 and 15 minute load averages, rounded to 2 decimals: how busy the machine was."""
    return [round(v, 2) for v in os.getloadavg()]


def child_env(**extra):
    """``os.environ`` with this checkout first on ``PYTHONPATH`` (and ``extra`` set), so
    that a child interpreter imports the package measured, not an installed copy."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_info(command=None):
    """Everything a results file records about its run, to merge into its JSON."""
    return {**code_state(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(),
            "command": command or " ".join(["python", *sys.argv]),
            "load_average": load_average()}


def defined(values):
    """The finite values as floats: JSON's null and pandas' NaN both mean undefined."""
    import math

    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_sd(values):
    """``"mean ± sd"`` of the :func:`defined` values (3 decimals); one value alone,
    ``"n/a"`` for none.
    """
    import numpy as np

    values = np.array(defined(values))
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def code_line(info):
    """One Markdown line naming the commit and whether the tree was dirty."""
    dirty = info.get("dirty")
    if dirty is None:  # a results file older than this module
        state = "dirty flag unrecorded"
    elif dirty:
        files = info.get("dirty_files") or []
        state = f"dirty: {len(files)} tracked file(s) changed ({', '.join(files[:5])})"
    else:
        state = "clean tree"
    return (f"commit `{info.get('commit')}` ({state}); command `{info.get('command')}`; "
            f"{info.get('date', 'date unrecorded')}")


def write_results(name, payload, markdown=None, out_dir=None):
    """Write ``NAME.json`` (and ``NAME.md`` when given) into ``out_dir``; return the paths.

    ``out_dir`` defaults to :data:`RESULTS_DIR`; quick smoke runs pass a temporary folder so
    that they never overwrite the committed results.
    """
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json"]
    paths[0].write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if markdown is not None:
        paths.append(out_dir / f"{name}.md")
        paths[1].write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return paths
