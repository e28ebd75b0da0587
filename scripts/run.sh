#!/usr/bin/env bash
# One command for a newcomer: install what is needed, build, and start the
# gateway on :8080 in front of the example API (:3000), with the embedded
# defaults (memory tier, the example policies).  Ctrl-C stops both.
#
# Environment: PORT / HOST and every other cachegw setting (see README);
# EXAMPLE_API_PORT (default 3000) moves the example API; BUILD_DIR (default
# build) is the CMake build directory, configured RelWithDebInfo if new.
# Arguments are passed to cachegw.
#
# Signals: SIGTERM, SIGINT and SIGHUP sent to this script are passed on to
# cachegw (SIGTERM/SIGINT drain it, SIGHUP reloads its policies); the script
# waits for it, stops the example API and exits with cachegw's status.  The
# example API must own its port: if something else already listens there,
# the script stops instead of putting the gateway in front of it.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "run.sh: $*" >&2
    exit 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

scripts/install-deps.sh
BUILD="${BUILD_DIR:-build}"
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target cachegw example-api >/dev/null

API_PORT="${EXAMPLE_API_PORT:-3000}"
[[ "$API_PORT" =~ ^[0-9]+$ ]] && ((API_PORT >= 1 && API_PORT <= 65535)) ||
    die "EXAMPLE_API_PORT must be a port number (1-65535), got '$API_PORT'"
if port_answers "$API_PORT"; then
    die "port $API_PORT is already in use, so the example API cannot listen there;" \
        "stop what owns it or set EXAMPLE_API_PORT to a free port"
fi

api_pid=""
gw_pid=""
cleanup() {
    if [[ -n "$gw_pid" ]] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid" 2>/dev/null || true
        wait "$gw_pid" 2>/dev/null || true
    fi
    if [[ -n "$api_pid" ]]; then
        kill -TERM "$api_pid" 2>/dev/null || true
        wait "$api_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

"$BUILD/example-api" --port "$API_PORT" &
api_pid=$!
# Ready when it answers and is still ours: a process that lost the race for
# the port exits, and its exit is what we look at, not the port.
for _ in $(seq 100); do
    kill -0 "$api_pid" 2>/dev/null || {
        wait "$api_pid" 2>/dev/null || true
        api_pid=""
        die "the example API could not listen on port $API_PORT (see its message above);" \
            "set EXAMPLE_API_PORT to a free port"
    }
    port_answers "$API_PORT" && break
    sleep 0.1
done
port_answers "$API_PORT" || die "the example API did not start listening on port $API_PORT"

export UPSTREAM_URL="${UPSTREAM_URL:-http://127.0.0.1:$API_PORT}"
echo "example API on http://127.0.0.1:$API_PORT; gateway on http://${HOST:-0.0.0.0}:${PORT:-8080}" >&2
echo "try: curl -i http://127.0.0.1:${PORT:-8080}/users/1   (twice: MISS then HIT)" >&2

# cachegw runs as a child (not exec'd) so the example API can be stopped after
# it.  A background job of a non-interactive shell ignores SIGINT, so an
# interrupt is passed on as SIGTERM, which drains the same way.
"$BUILD/cachegw" "$@" &
gw_pid=$!
forward() { kill "-$1" "$gw_pid" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward TERM' INT
trap 'forward HUP' HUP
# wait returns early (status > 128) when a trapped signal arrives; wait again
# until cachegw has exited.  bash keeps an exited child's status, so the last
# wait reports cachegw's own exit status even if it exited during a trap.
while kill -0 "$gw_pid" 2>/dev/null; do
    wait "$gw_pid" || true
done
status=0
wait "$gw_pid" || status=$?
gw_pid=""
exit "$status"
