#!/usr/bin/env bash
# Re-run every benchmark on the current commit, in the order their caches need, and
# refresh README's figures from the results. About 1.5 hours on 2 cores.
#   bash benchmarks/run_all.sh            # everything
#   COLD_CACHE=/tmp/x bash benchmarks/run_all.sh   # the cold headline starts from this empty folder
set -euo pipefail
cd "$(dirname "$0")/.."
# The headline is timed from empty caches: a fresh cache folder, then kept for the rest,
# which read the features it computed.
export HIERCLS_CACHE_DIR=${COLD_CACHE:-$(mktemp -d "${TMPDIR:-/tmp}/hiercls-cache.XXXX")}
if [ -n "$(ls -A "$HIERCLS_CACHE_DIR" 2>/dev/null)" ]; then
  echo "run_all: $HIERCLS_CACHE_DIR is not empty; the headline must start from a cold cache" >&2
  exit 2
fi
step() { echo "== $(date -u +%H:%M:%S) $*"; "$@"; }
step python benchmarks/reproduce_paper.py --only headline --name paper_tables_headline
step python benchmarks/overhead.py
step python benchmarks/demo_time.py
step python benchmarks/reproduce_paper.py
if [ -f benchmarks/slide_speed.py ]; then step python benchmarks/slide_speed.py; fi
step python benchmarks/levers.py
step python benchmarks/radiomics_speed.py ${RADIOMICS_ARGS:-}  # e.g. RADIOMICS_ARGS="--tiles 200": PyRadiomics over all tiles takes ~45 min
step python benchmarks/readme_figures.py
echo "== $(date -u +%H:%M:%S) done; results in benchmarks/results/, README refreshed"
