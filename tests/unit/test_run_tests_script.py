"""run-tests.sh on a fresh machine: it waits for another apt's locks instead of failing,
and says one line about what it installs (apt's own output only when apt fails).

The script runs from a copy of itself, with stand-ins for apt-get and dpkg first on
PATH and for the virtualenv's tools, so nothing is installed for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_DPKG = """#!/bin/sh
# Every package is installed but strace.
[ "$2" = strace ] && exit 1
exit 0
"""

# The first `update` finds the lists lock held (what apt-get says then); later calls
# succeed, noisily, as apt does.
FAKE_APT = """#!/bin/sh
echo "$*" >> "{calls}"
case "$*" in
  *" update"*)
    if [ ! -e "{calls}.locked" ]; then
      touch "{calls}.locked"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2
      echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
      exit 100
    fi ;;
  *" install"*)
    [ -n "{fail_install}" ] && {{ echo "E: Unable to locate package strace" >&2; exit 100; }} ;;
esac
echo "Reading package lists..."
echo "debconf: delaying package configuration, since apt-utils is not installed" >&2
exit 0
"""

FAKE_TOOL = "#!/bin/sh\nexit 0\n"


def _run(tmp_path: Path, fail_install: bool = False) -> tuple[subprocess.CompletedProcess, list]:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / ".venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(ROOT / "run-tests.sh", repo / "run-tests.sh")
    calls = tmp_path / "apt-calls"
    tools = {bin_dir / "dpkg": FAKE_DPKG,
             bin_dir / "apt-get": FAKE_APT.format(calls=calls,
                                                  fail_install="1" if fail_install else "")}
    for name in ("python", "pip", "ruff", "pytest"):
        tools[repo / ".venv" / "bin" / name] = FAKE_TOOL
    for path, text in tools.items():
        path.write_text(text)
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable}
    result = subprocess.run([str(repo / "run-tests.sh"), "tests/unit"], capture_output=True,
                            text=True, env=env, timeout=300)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return result, lines


def test_apt_waits_for_the_locks_and_stays_quiet(tmp_path):
    result, calls = _run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Retried after the lock error, then installed what was missing, waiting for dpkg's lock.
    assert [c.split()[-1] for c in calls] == ["update", "update", "strace"], calls
    for call in calls:
        assert "-o DPkg::Lock::Timeout=600" in call and "-y" in call, call
    assert "install" in calls[-1]
    # One line of its own; none of apt's.
    assert result.stdout.splitlines() == ["installing Debian packages: strace"]
    assert result.stderr == ""


def test_apt_output_is_shown_when_it_fails(tmp_path):
    result, calls = _run(tmp_path, fail_install=True)
    assert result.returncode != 0
    assert "Unable to locate package strace" in result.stderr
    assert "apt-get install failed" in result.stderr
