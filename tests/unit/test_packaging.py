"""The package builds as `pip install` builds it, without a deprecation warning, and its
metadata names the license as an SPDX expression (pyproject.toml, PEP 639)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_builds_without_warnings_and_declares_mit(tmp_path):
    # pip's isolated build, as `pip install -e .` and run-tests.sh do; -v shows what
    # the build backend prints (pip hides it otherwise, warnings included).
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--disable-pip-version-check",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Deprecat" not in output, output[-5000:]
    (wheel,) = tmp_path.glob("python_docker_registry-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA"))
        licenses = [n for n in archive.namelist() if "/licenses/" in n]
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert [n.rsplit("/", 1)[1] for n in licenses] == ["LICENSE"]
