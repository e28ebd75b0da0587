#!/usr/bin/env bash
# Benchmarks: installs wrk and nginx, builds a release cachegw, runs
# bench/bench.py (side by side with nginx proxy_cache and the bare upstream)
# and prints a markdown report.  Extra arguments go to bench.py
# (e.g. --rounds 5 --seconds 10 --only hot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cachegw example-api >/dev/null
exec python3 bench/bench.py "$@"
