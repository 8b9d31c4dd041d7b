"""Helpers of the mirror tests: a mirror registry in front of real upstreams, and
counting what reached an upstream (from its own access log)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.server import RegistryProcess


def write_config(path: Path, upstreams: list[dict[str, Any]], **extra: Any) -> Path:
    config = {"mirror": {"upstreams": upstreams, **extra.pop("mirror", {})}, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def start_mirror(base: Path, upstreams: list[dict[str, Any]], workers: int = 2,
                 **extra: Any) -> RegistryProcess:
    base.mkdir(parents=True, exist_ok=True)
    config = write_config(base / "mirror.yml", upstreams, **extra)
    return RegistryProcess(base / "data", workers=workers, config=config).start()


class AccessLog:
    """Requests an upstream registry (a RegistryProcess) received, from its access log.

    Lines are written when a response is done, by any worker: ``settle`` sends a
    marker request and waits until its line is there, so that every request that
    finished before is counted.
    """

    def __init__(self, server: RegistryProcess) -> None:
        self.server = server

    def lines(self) -> list[str]:
        return self.server.log_path.read_text(errors="replace").splitlines()

    def settle(self) -> None:
        marker = f"settle{uuid.uuid4().hex[:12]}"
        requests.get(f"{self.server.url}/v2/{marker}/tags/list", timeout=30,
                     auth=getattr(self.server, "test_auth", None))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(marker in line for line in self.lines()):
                return
            time.sleep(0.05)
        raise AssertionError("the upstream's access log never showed the marker request")

    def count(self, method: str, path_pattern: str) -> int:
        """Requests with ``method`` whose path matches ``path_pattern`` (a regex)."""
        self.settle()
        pattern = re.compile(rf" {method} {path_pattern}\S* [0-9]{{3}} ")
        return sum(1 for line in self.lines() if pattern.search(line))


def metric(server: RegistryProcess, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample of ``server`` over series with these labels."""
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def upstream_requests(mirror: RegistryProcess, upstream: str, kind: str = "blob",
                      method: str = "GET") -> float:
    """Requests the mirror sent to ``upstream`` (an upstream registry's own access log
    and metrics skip file responses, so blob GETs are counted on the mirror's side)."""
    return metric(mirror, "registry_mirror_upstream_requests_total", upstream=upstream,
                  kind=kind, method=method)


class FrontServer:
    """A tiny real HTTP server in front of an upstream registry.

    ``mode``: "proxy" passes requests through, "429" answers Too Many Requests
    (Retry-After: an hour), "500" answers a server error, "redirect" answers blob
    requests with a 307 to ``redirect_to`` (same path), "truncate" stops blob bodies
    half-way and drops the connection. ``seen`` lists every
    request as (mode, method, path).
    """

    def __init__(self, upstream_url: str) -> None:
        import http.server
        import threading

        self.upstream_url = upstream_url
        self.mode = "proxy"
        self.redirect_to = ""
        self.seen: list[tuple[str, str, str]] = []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                front.handle(self)

            def do_HEAD(self) -> None:
                front.handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, mode: str | None = None, path_part: str = "") -> int:
        return sum(1 for m, _, p in self.seen if (mode is None or m == mode) and path_part in p)

    def handle(self, request: Any) -> None:
        mode, method, path = self.mode, request.command, request.path
        self.seen.append((mode, method, path))
        if mode in ("429", "500"):
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            request.send_response(int(mode))
            request.send_header("Retry-After", "3600")
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            if method != "HEAD":
                request.wfile.write(body)
            return
        if mode == "redirect" and "/blobs/" in path:
            request.send_response(307)
            request.send_header("Location", self.redirect_to + path)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        if mode == "truncate" and "/blobs/" in path and method == "GET":
            # The whole length announced, half the bytes sent, then the connection drops.
            reply = requests.get(self.upstream_url + path, timeout=60)
            request.send_response(200)
            request.send_header("Content-Length", str(len(reply.content)))
            request.end_headers()
            request.wfile.write(reply.content[: len(reply.content) // 2])
            request.wfile.flush()
            request.close_connection = True
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept",)}
        reply = requests.request(method, self.upstream_url + path, headers=headers,
                                 timeout=60, stream=True)
        body = b"" if method == "HEAD" else reply.raw.read()
        request.send_response(reply.status_code)
        request.send_header("RateLimit-Remaining", "42;w=21600")  # as Docker Hub says it
        for key in ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate"):
            if key in reply.headers:
                request.send_header(key, reply.headers[key])
        length = reply.headers.get("Content-Length", str(len(body)))
        request.send_header("Content-Length", length if method == "HEAD" else str(len(body)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
