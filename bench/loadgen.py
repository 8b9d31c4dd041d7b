"""Request-rate load: wrk for GETs, ApacheBench for HEAD (wrk waits for a body after
a HEAD response that carries Content-Length). Both keep their connections alive.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class Load:
    rps: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers, socket errors, timeouts


def _number(pattern: str, text: str, default: float | None = None) -> float:
    m = re.search(pattern, text, re.MULTILINE)
    if not m:
        if default is None:
            raise RuntimeError(f"cannot find {pattern!r} in load generator output:\n{text}")
        return default
    return float(m.group(1))


def wrk(url: str, seconds: float, connections: int = 32, threads: int = 2,
        headers: dict[str, str] | None = None) -> Load:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", "10s", "--latency"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)
    if not m:
        raise RuntimeError(f"no p99 in wrk output:\n{out}")
    socket_errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Load(rps=_number(r"^Requests/sec:\s+([\d.]+)", out),
                p99_ms=float(m.group(1)) * UNITS[m.group(2)],
                requests=int(_number(r"^\s+(\d+) requests in", out)),
                errors=int(_number(r"Non-2xx or 3xx responses:\s+(\d+)", out, 0)) + socket_errors)


def ab_head(url: str, seconds: float, connections: int = 32,
            headers: dict[str, str] | None = None) -> Load:
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv:
        cmd = ["ab", "-q", "-i", "-k", "-c", str(connections), "-t", f"{seconds:g}",
               "-n", str(int(200_000 * seconds)), "-s", "10", "-e", csv.name]
        for key, value in (headers or {}).items():
            cmd += ["-H", f"{key}: {value}"]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
        percentiles = dict(line.split(",") for line in csv.read().splitlines()[1:])
    requests = int(_number(r"^Complete requests:\s+(\d+)", out))
    if requests and not _number(r"^Keep-Alive requests:\s+(\d+)", out, 0):
        raise RuntimeError(f"ab could not keep connections alive:\n{out}")
    return Load(rps=_number(r"^Requests per second:\s+([\d.]+)", out),
                p99_ms=float(percentiles["99"]),
                requests=requests,
                errors=int(_number(r"^Failed requests:\s+(\d+)", out)
                           + _number(r"^Non-2xx responses:\s+(\d+)", out, 0)))
