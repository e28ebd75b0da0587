#!/usr/bin/env bash
# One command for a newcomer: install what is needed, build, and start the
# gateway on :8080 in front of the example API (:3000), with the embedded
# defaults (memory tier, the example policies).  Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
API_PORT="${EXAMPLE_API_PORT:-3000}"
build/example-api --port "$API_PORT" &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true' EXIT
export UPSTREAM_URL="${UPSTREAM_URL:-http://127.0.0.1:$API_PORT}"
echo "example API on http://127.0.0.1:$API_PORT; gateway on http://${HOST:-0.0.0.0}:${PORT:-8080}" >&2
echo "try: curl -i http://127.0.0.1:${PORT:-8080}/users/1   (twice: MISS then HIT)" >&2
build/cachegw "$@"
