#!/usr/bin/env bash
# Invalidation at scale: 1,000,000 entries in a private redis-server, two
# gateway instances, a prefix and a tag covering 100,000 entries each.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cachegw example-api redis-fill >/dev/null
exec python3 bench/scale_invalidation.py "$@"
