#!/usr/bin/env bash
# Benchmarks: installs wrk, nginx and varnish, builds a release cachegw, runs
# bench/bench.py (side by side with nginx proxy_cache and the bare upstream)
# and prints a markdown report.  Extra arguments go to bench.py, e.g.
#   bench/run.sh --rounds 5 --seconds 10 --only hot
#   bench/run.sh --only issue9 --profile      (hot, keys10k, keys1m, users100k; perf)
# --profile also installs perf (Debian's linux-perf) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
# Varnish 7.1 is an anchor of the compression scenario (bench_compress.py), which runs its
# own varnishd (own -n directory, free port).  Debian's package enables a system varnish
# service on port 6081: policy-rc.d keeps the install from starting it, and one that runs
# anyway (started before, or by systemd at boot) is stopped so it neither holds a port nor
# takes CPU from the servers measured.
if ! dpkg-query -W -f='${Status}' varnish 2>/dev/null | grep -q "install ok installed"; then
  export DEBIAN_FRONTEND=noninteractive
  made_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends varnish >/dev/null
  if [[ -n "$made_policy" ]]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
fi
for svc in varnish varnishncsa; do
  if [[ -d /run/systemd/system ]]; then
    if systemctl is-active --quiet "$svc"; then $SUDO systemctl stop "$svc"; fi
  elif command -v service >/dev/null && service "$svc" status >/dev/null 2>&1; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done
for arg in "$@"; do
  if [[ "$arg" == "--profile" ]] && ! command -v perf >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
  fi
done
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cachegw example-api >/dev/null
export PYTHONDONTWRITEBYTECODE=1
exec python3 bench/bench.py "$@"
