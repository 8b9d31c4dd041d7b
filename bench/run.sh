#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: install what the benchmark needs,
# set up the registry's virtualenv, run the side-by-side comparison.
# Usage: bench/run.sh [--quick] [other bench/compare.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for pkg in docker-registry wrk apache2-utils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts its own service on port 5000; the harness runs its own copies.
  $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/python bench/compare.py "$@"
