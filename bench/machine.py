"""The machine's own limits, for context: SHA-256 speed, TCP loopback throughput,
and the ceilings of the harness's client against a null server (which answers GETs
by sendfile and drops request bodies), to show the client is not the bottleneck.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import platform
import socket
import threading
import time

from bench.client import Client
from bench.data import Blob
from bench.proctree import MiB


def sha256_mibps(total_mib: int = 256, tries: int = 3) -> float:
    block, best = os.urandom(MiB), 0.0
    for _ in range(tries):
        h, start = hashlib.sha256(), time.perf_counter()
        for _ in range(total_mib):
            h.update(block)
        best = max(best, total_mib / (time.perf_counter() - start))
    return best


def _sink(server: socket.socket) -> None:
    buf = memoryview(bytearray(MiB))
    while True:
        conn, _ = server.accept()
        with conn:
            while conn.recv_into(buf):
                pass


def loopback_mibps(total_mib: int = 2048, tries: int = 3) -> float:
    """TCP over 127.0.0.1 between two processes, 1 MiB sends and receives; best of tries."""
    server = socket.create_server(("127.0.0.1", 0))
    sink = multiprocessing.get_context("fork").Process(target=_sink, args=(server,), daemon=True)
    sink.start()
    block, best = memoryview(os.urandom(MiB)), 0.0
    for _ in range(tries):
        with socket.create_connection(server.getsockname()) as s:
            start = time.perf_counter()
            for _ in range(total_mib):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)  # returns when the sink has read everything and closed
            best = max(best, total_mib / (time.perf_counter() - start))
    sink.terminate()
    sink.join()
    server.close()
    return best


class NullServer:
    """Runs in a forked child process, so it shares no GIL with the client."""

    def __init__(self, blob: Blob) -> None:
        self.blob = blob
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.proc = multiprocessing.get_context("fork").Process(target=self._accept, daemon=True)
        self.proc.start()
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        rfile, buf = conn.makefile("rb"), memoryview(bytearray(MiB))
        with conn, rfile, open(self.blob.path, "rb") as blob:
            while request := rfile.readline():
                length = 0
                while (line := rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while length:
                    length -= rfile.readinto(buf[:min(length, MiB)])
                if request.startswith(b"GET "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.blob.size)
                    conn.sendfile(blob, 0, self.blob.size)
                else:
                    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join()


def client_ceilings(blob: Blob, tries: int = 3) -> tuple[float, float]:
    """(push, pull) MiB/s of the benchmark client against the null server, best of tries."""
    server = NullServer(blob)
    c = Client(server.url)
    push = pull = 0.0
    with open(blob.path, "rb") as f:
        for _ in range(tries):
            start = time.perf_counter()
            c.send_file("PUT", "/null", f, 0, blob.size).expect(201)
            push = max(push, blob.size / MiB / (time.perf_counter() - start))
            start = time.perf_counter()
            c.fetch("/null")
            pull = max(pull, blob.size / MiB / (time.perf_counter() - start))
    c.close()
    server.close()
    return push, pull


def describe() -> dict[str, str]:
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"nproc": str(os.cpu_count()), "memory": f"{mem_kib / 2**20:.1f} GiB", "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg": load}
