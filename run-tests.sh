#!/usr/bin/env bash
# Set up everything the tests need on a Debian 12 machine and run them all.
# Usage: ./run-tests.sh [pytest args...]
# Without arguments: the whole suite, then the API suite again against a cluster.
set -euo pipefail
cd "$(dirname "$0")"

# Real clients and tools the tests drive (Debian packages).
DEBIAN_PACKAGES=(skopeo podman sqlite3 curl apache2-utils chromium chromium-driver prometheus postgresql nginx docker-compose strace docker-registry)
missing=()
# Debian's python3 needs python3-venv for "python3 -m venv".
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/ruff check .
if (($#)); then
  exec .venv/bin/pytest "$@"
fi
status=0
.venv/bin/pytest || status=$?
# The API suite again with `registry` = 3 instances on S3 (SeaweedFS) + PostgreSQL
# behind nginx; the tests that need a single process are deselected (counted below).
echo "=== tests/api against a cluster (REGISTRY_TEST_CLUSTER=1) ==="
REGISTRY_TEST_CLUSTER=1 .venv/bin/pytest tests/api || status=$?
exit "$status"
