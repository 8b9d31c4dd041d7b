#!/usr/bin/env bash
# Set up everything the tests need on a Debian 12 machine and run them all.
# Usage: ./run-tests.sh [pytest args...]
# Without arguments: the whole suite, then the API suite again against a cluster.
set -euo pipefail
cd "$(dirname "$0")"

# Real clients and tools the tests drive (Debian packages).
DEBIAN_PACKAGES=(skopeo podman sqlite3 curl apache2-utils chromium chromium-driver prometheus postgresql nginx docker-compose strace docker-registry containerd docker.io)
missing=()
# Debian's python3 needs python3-venv for "python3 -m venv".
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  apt_log=$(mktemp)
  # Quiet unless it fails. Another apt (unattended-upgrades on a fresh machine) may hold
  # a lock: wait for it instead of failing at once. DPkg::Lock::Timeout covers the dpkg
  # lock; `apt-get update` does not wait for the lists lock, so retry that (10 min).
  apt() {
    local deadline=$((SECONDS + 600))
    until $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 -y -qq "$@" >"$apt_log" 2>&1; do
      if grep -q "Could not get lock" "$apt_log" && ((SECONDS < deadline)); then
        sleep 5
        continue
      fi
      cat "$apt_log" >&2
      echo "apt-get $1 failed" >&2
      exit 1
    done
  }
  apt update
  apt install "${missing[@]}"
  rm -f "$apt_log"
  # Installing docker-registry starts Debian's Distribution service on port 5000 where an
  # init system runs; the tests start their own, and port 5000 belongs to `python app.py`.
  if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    $SUDO service docker-registry stop >/dev/null 2>&1 || true
  fi
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
