#!/usr/bin/env bash
# One command for the whole test suite: install what is needed, build with
# -Werror and ASan/UBSan, and run every test (C unit tests, busted specs,
# integration tests against the real binary, the example API and real
# redis-server instances that the suite starts and stops itself).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD="${BUILD_DIR:-build-test}"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCACHEGW_WERROR=ON -DCACHEGW_SANITIZE=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$BUILD"
# A failed test is run once more (--repeat until-pass:2): on a shared 2-core machine a
# timing-sensitive test can lose a round to a neighbour; one that fails twice fails the run,
# and ctest's output names every test that needed the second run.
ctest --output-on-failure -j2 --repeat until-pass:2 "$@"
