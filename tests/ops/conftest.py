from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the ociregistry command line; returns the CompletedProcess."""
    import os

    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )
