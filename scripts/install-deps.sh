#!/usr/bin/env bash
# Installs the Debian 12 packages cachegw needs to build, run and test.
# Idempotent: only missing packages are installed; apt-get update runs only
# when something is missing.  Usage: scripts/install-deps.sh [--bench]
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ca-certificates openssl
  liblua5.4-dev lua5.4 libhiredis-dev libmicrohttpd-dev libssl-dev libcurl4-openssl-dev
  libjansson-dev zlib1g-dev libbrotli-dev lua-busted redis-server redis-tools python3 curl clang-14 libclang-rt-14-dev
  dpkg-dev file systemd groff-base man-db python3-prometheus-client
)
if [[ "${1:-}" == "--bench" ]]; then
  PACKAGES+=(wrk nginx-light)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps Debian's redis-server/nginx packages from starting their
# own system services: the tests and benchmarks start their own instances.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
