#!/usr/bin/env bash
# Builds and runs the libFuzzer harnesses of tests/fuzz (see its CMakeLists.txt).
#
#   scripts/fuzz.sh list                    the harnesses
#   scripts/fuzz.sh build                   configure + build them (clang-14)
#   scripts/fuzz.sh <harness|all> [seconds] long run (default 600 s each): new
#                                           inputs go to a working corpus in
#                                           the build dir, crashes to its
#                                           crashes/ directory
#   scripts/fuzz.sh --ci <harness> [secs]   what ctest runs: a bounded run
#                                           (default 10 s) over a copy of the
#                                           seeds, replaying crashes/<name>/
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz-clang in the repository),
# FUZZ_JOBS (build parallelism, default 2), CC (default clang-14).
# Exit status: 0 clean; 1 a crash, leak, timeout or failed build; 77 the
# harness is not built because its module has not landed (ctest: skipped).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz-clang}
CC_FUZZ=${CC:-clang-14}
# libFuzzer options shared by every run: bounded input size, memory and time
# per input (a slower input is a finding: a hang or a quadratic parser).
OPTS=(-max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)

harnesses() {
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        basename "$f" .c | sed 's/^fuzz_//'
    done
}

build() {
    if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
        echo "fuzz: $CC_FUZZ not found; install clang-14 and libclang-rt-14-dev" \
             "(scripts/install-deps.sh)" >&2
        exit 1
    fi
    CC="$CC_FUZZ" cmake -S "$ROOT/tests/fuzz" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug >/dev/null
    cmake --build "$BUILD" -j"${FUZZ_JOBS:-2}"
}

binary() {
    local bin="$BUILD/fuzz_$1"
    if [[ ! -x "$bin" ]]; then
        if [[ -f "$ROOT/tests/fuzz/fuzz_$1.c" ]]; then
            echo "fuzz: fuzz_$1 is not built (its module has not landed; see" \
                 "tests/fuzz/CMakeLists.txt)" >&2
            exit 77
        fi
        echo "fuzz: no harness '$1' (try: scripts/fuzz.sh list)" >&2
        exit 1
    fi
    echo "$bin"
}

run_ci() {
    local name=$1 secs=${2:-10}
    local bin
    bin=$(binary "$name")
    work=$(mktemp -d "${TMPDIR:-/tmp}/cachegw-fuzz-$name.XXXXXX") # global: the trap needs it
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/corpus" "$work/artifacts"
    cp -r "$ROOT/tests/fuzz/corpus/$name/." "$work/corpus/"
    # What an earlier run in this build tree found (crashes/<name>/) is replayed
    # with the seeds: a random run that does not meet the input again (ctest's
    # retry in scripts/test.sh) must not turn a finding into a pass.  Commit the
    # input to tests/fuzz/corpus/<name>/ with the fix; then delete it here.
    local found=()
    if compgen -G "$BUILD/crashes/$name/*" >/dev/null; then found=("$BUILD/crashes/$name"); fi
    # The seeds (regression inputs included) run first; any crash fails.
    if ! (cd "$work" && "$bin" "${OPTS[@]}" -max_total_time="$secs" \
            -artifact_prefix="$work/artifacts/" "$work/corpus" "${found[@]}"); then
        echo "fuzz: fuzz_$name failed; reproducer(s):" >&2
        for f in "$work"/artifacts/*; do
            [[ -e "$f" ]] || continue
            mkdir -p "$BUILD/crashes/$name"
            cp "$f" "$BUILD/crashes/$name/"
            echo "  $BUILD/crashes/$name/$(basename "$f")" \
                 "(base64: $(head -c 512 "$f" | base64 -w0))" >&2
        done
        exit 1
    fi
}

run_long() {
    local name=$1 secs=$2
    local bin
    bin=$(binary "$name")
    mkdir -p "$BUILD/corpus/$name" "$BUILD/crashes/$name"
    echo "fuzz: fuzz_$name for ${secs}s; corpus $BUILD/corpus/$name" >&2
    (cd "$BUILD" && "$bin" "${OPTS[@]}" -max_total_time="$secs" \
        -artifact_prefix="$BUILD/crashes/$name/" "$BUILD/corpus/$name" \
        "$ROOT/tests/fuzz/corpus/$name")
}

case "${1:-}" in
list) harnesses ;;
build) build ;;
--ci)
    [[ $# -ge 2 ]] || { echo "usage: scripts/fuzz.sh --ci <harness> [seconds]" >&2; exit 2; }
    run_ci "$2" "${3:-10}"
    ;;
"" | -h | --help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 ]] || exit 2
    ;;
*)
    secs=${2:-600}
    [[ "$secs" =~ ^[0-9]+$ ]] || { echo "fuzz: seconds must be a number" >&2; exit 2; }
    build
    if [[ "$1" == all ]]; then
        status=0
        for h in $(harnesses); do
            rc=0
            run_long "$h" "$secs" || rc=$?
            if [[ $rc -ne 0 && $rc -ne 77 ]]; then status=1; fi
        done
        exit $status
    fi
    run_long "$1" "$secs"
    ;;
esac
