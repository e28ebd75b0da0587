#!/usr/bin/env bash
# Benchmarks: installs wrk and nginx, builds a release cachegw, runs
# bench/bench.py (side by side with nginx proxy_cache and the bare upstream)
# and prints a markdown report.  Extra arguments go to bench.py, e.g.
#   bench/run.sh --rounds 5 --seconds 10 --only hot
#   bench/run.sh --only issue9 --profile      (hot, keys10k, keys1m, users100k; perf)
# --profile also installs perf (Debian's linux-perf) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
for arg in "$@"; do
  if [[ "$arg" == "--profile" ]] && ! command -v perf >/dev/null; then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
  fi
done
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cachegw example-api >/dev/null
export PYTHONDONTWRITEBYTECODE=1
exec python3 bench/bench.py "$@"
