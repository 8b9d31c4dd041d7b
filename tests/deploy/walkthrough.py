"""Run docs/deployment.md's walkthroughs as written: their marked shell blocks, in order.

A block belongs to a walkthrough when the line before its ```sh fence is
``<!-- walkthrough: NAME -->`` (or ``<!-- walkthrough: NAME teardown -->`` for the
blocks that take it down again). The first block of each walkthrough gives every
machine-specific value a default (``export X=${X:-default}``); the tests set them to
temporary directories and free loopback ports, and change nothing else.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT_MD = ROOT / "docs" / "deployment.md"
BLOCK = re.compile(r"^<!-- walkthrough: ([\w-]+)( teardown)? -->\n```sh\n(.*?)^```\s*$",
                   re.M | re.S)
SETUP_TIMEOUT = 1200  # seconds: a pip install and three instances on a loaded 2-core machine


def blocks(name: str, teardown: bool = False) -> list[str]:
    """The shell blocks of walkthrough ``name`` (or of its teardown), in document order."""
    text = DEPLOYMENT_MD.read_text()
    found = [m.group(3) for m in BLOCK.finditer(text)
             if m.group(1) == name and bool(m.group(2)) == teardown]
    assert found, f"no walkthrough {name!r}{' teardown' if teardown else ''} in {DEPLOYMENT_MD}"
    return found


def run(name: str, environ: dict[str, str], teardown: bool = False,
        timeout: float = SETUP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run the blocks in one bash, from the repository's root (where the docs say to be).

    Setup stops at the first failing command (``set -e``); a teardown goes on, so that
    it removes whatever a failed setup left.
    """
    options = "set -uo pipefail" if teardown else "set -euo pipefail"
    script = "\n".join([options, *blocks(name, teardown)])
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env={**os.environ, **environ},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_ports_free(ports: list[int], timeout: float = 90) -> list[int]:
    """The ports still taken once ``timeout`` has passed (none, when all were let go)."""
    deadline = time.monotonic() + timeout
    while True:
        taken = [p for p in ports if not port_free(p)]
        if not taken or time.monotonic() > deadline:
            return taken
        time.sleep(0.5)


def free_ports(count: int, spread: int = 0, avoid: frozenset[int] = frozenset()) -> list[int]:
    """``count`` distinct free loopback ports, none in ``avoid``; with ``spread``,
    ``port + spread`` is free too (SeaweedFS puts each gRPC port 10000 above its HTTP
    port) and none of the ports is another's ``port + spread``."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in found or port in avoid:
            continue
        if spread and (port + spread > 65535 or port + spread in avoid
                       or not port_free(port + spread)
                       or any(abs(port - p) == spread for p in found)):
            continue
        found.append(port)
    return found


def failure(result: subprocess.CompletedProcess[str], *logs: Path) -> str:
    """A readable account of a failed run, with the tails of the logs it wrote."""
    out = [f"exit {result.returncode}", "--- stdout", result.stdout[-4000:],
           "--- stderr", result.stderr[-6000:]]
    for log in logs:
        for path in sorted(log.parent.glob(log.name)) if "*" in log.name else [log]:
            if path.is_file():
                out += [f"--- {path}", path.read_text(errors="replace")[-3000:]]
    return "\n".join(out)
