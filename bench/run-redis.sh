#!/usr/bin/env bash
# Benchmarks of the Redis tier: installs wrk and redis, builds a release
# cachegw into build-bench, runs bench/bench_redis.py (its own redis-server,
# plain and TLS, certificates generated on the spot) and prints a markdown
# report.  Extra arguments go to bench_redis.py (e.g. --rounds 5 --seconds 10
# --only hits,redis-benchmark,fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cachegw example-api >/dev/null
exec python3 bench/bench_redis.py "$@"
