"""nginx (Debian's) as the load balancer in front of registry instances, for tests.

A foreground nginx with a prefix directory of its own (config, pid, logs, temp
files) on a free loopback port: round robin over the instances, no session
affinity, request and response bodies streamed both ways (no buffering, no
size limit), HTTP/1.1 keep-alive to the instances and long timeouts for big
layers: docs/deployment.md's nginx example, over several instances.

Each access-log line names the instance that answered (``upstream=``), so a
test can tell where a request went.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.server import free_port

START_TIMEOUT = 30

CONFIG = """\
{user}
worker_processes 1;  # one round-robin counter: requests alternate exactly
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}

http {{
    log_format cluster '$remote_addr "$request" $status upstream=$upstream_addr '
                       'upstream_status=$upstream_status ra=$sent_http_retry_after '
                       'rid=$http_x_request_id';
    access_log {prefix}/access.log cluster;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server_tokens off;

    upstream registry {{
        # Round robin, no affinity: any instance may take any request, an upload's
        # chunks included.
{servers}
        keepalive 32;
        keepalive_timeout 60s;  # below gunicorn's 75 s: nginx closes idle ones first
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;  # layers of any size
        large_client_header_buffers 4 64k;  # the registry enforces its own limits
        client_body_timeout 900s;
        send_timeout 900s;
        keepalive_timeout 75s;

        location = /_nginx/health {{
            access_log off;
            return 204;
        }}

        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_redirect off;
            # Stream chunks to the instance as they arrive, and blobs to the client.
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_connect_timeout 10s;
            proxy_send_timeout 900s;
            proxy_read_timeout 900s;
            # Another instance is tried only when this one could not be reached or
            # timed out. nginx never replays a POST or PATCH that reached an instance
            # (no "non_idempotent"), and with unbuffered bodies nothing whose body
            # was being sent: a chunk goes to exactly one instance, or fails.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {tries};
            proxy_next_upstream_timeout 30s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("nginx not found: apt-get install nginx (run-tests.sh does)")


class Nginx:
    """A load balancer over ``upstreams`` ("host:port" of each registry instance)."""

    def __init__(self, upstreams: list[str], port: int | None = None) -> None:
        if not upstreams:
            raise ValueError("nginx needs at least one upstream")
        self.binary = nginx_binary()
        self.upstreams = list(upstreams)
        self.port = port or free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="ociregistry-nginx-"))
        self.proc: subprocess.Popen | None = None
        self.access_log = self.prefix / "access.log"
        self.error_log = self.prefix / "error.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self) -> str:
        user = ""
        if os.geteuid() == 0:
            # Workers would be "nobody", who cannot enter a private temp directory.
            user = (f"user {pwd.getpwuid(os.geteuid()).pw_name} "
                    f"{grp.getgrgid(os.getegid()).gr_name};")
        servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;"
                            for u in self.upstreams)
        return CONFIG.format(user=user, prefix=self.prefix, port=self.port, servers=servers,
                             tries=len(self.upstreams))

    def start(self) -> Nginx:
        (self.prefix / "tmp").mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self._config())
        # -e: the error log before the config is read (else /var/log/nginx/error.log).
        cmd = [self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.error_log)]
        check = subprocess.run([*cmd, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejects its config:\n{check.stderr}\n{conf.read_text()}")
        self._out = open(self.prefix / "stdout.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._out.close()
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.tail()}")
            if self._answers():
                return self
            time.sleep(0.05)
        log = self.tail()
        self.stop()
        raise RuntimeError(f"nginx did not start in time:\n{log}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /_nginx/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 204")
        except OSError:
            return False

    def tail(self, size: int = 3000) -> str:
        out = []
        for path in (self.error_log, self.prefix / "stdout.log"):
            if path.exists():
                out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-size:]}")
        return "\n".join(out)

    def upstreams_of(self, request_id: str, count: int = 0) -> list[str]:
        """The instances that answered the requests sent with this X-Request-ID.

        nginx logs a request after its response has gone out: wait (a while) for
        ``count`` lines.
        """
        deadline = time.monotonic() + 30
        while True:
            found = []
            for line in self.access_log.read_text().splitlines():
                if line.endswith(f" rid={request_id}"):
                    match = re.search(r" upstream=(\S+) ", line)
                    if match:
                        found.append(match.group(1))
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
        finally:
            if self.proc is not None:
                self._out.close()
            shutil.rmtree(self.prefix, ignore_errors=True)


DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "registry.conf"

DEPLOY_MAIN = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}

http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{site}
}}
"""


class DeployNginx(Nginx):
    """The shipped deploy/nginx/registry.conf, as is, in front of ``upstreams``.

    Only what cannot work outside the compose network changes: the upstream
    servers (the compose service names) and the listen address (port 80).
    """

    def _config(self) -> str:
        site = DEPLOY_CONF.read_text()
        # The shipped server parameters (max_fails, fail_timeout) are kept as they are.
        shipped = re.search(r"(?m)^\s*server\s+registry-\d+:5000\b([^;\n]*);", site)
        assert shipped, "no upstream servers in deploy/nginx/registry.conf"
        servers = "\n".join(f"    server {u}{shipped[1]};" for u in self.upstreams)
        site, count = re.subn(r"(?m)^\s*server\s+registry-\d+:5000\b[^\n]*\n", "", site)
        assert count, "no upstream servers in deploy/nginx/registry.conf"
        site = site.replace("upstream ociregistry {", "upstream ociregistry {\n" + servers, 1)
        site, count = re.subn(r"(?m)^(\s*)listen 80 default_server;",
                              rf"\g<1>listen 127.0.0.1:{self.port} default_server;", site)
        assert count == 1, "no 'listen 80 default_server;' in deploy/nginx/registry.conf"
        return DEPLOY_MAIN.format(user=self._user(), prefix=self.prefix, site=site)

    def _user(self) -> str:
        if os.geteuid() != 0:
            return ""
        return (f"user {pwd.getpwuid(os.geteuid()).pw_name} "
                f"{grp.getgrgid(os.getegid()).gr_name};")

    def _answers(self) -> bool:
        # No health location of its own: the registry's /healthz, through the proxy.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
