"""Delivery runs in one process of its own per instance (events/process.py): the
serving workers never deliver; the master restarts the process when it dies and
takes it along when it stops, whatever the signal, and when it is killed itself."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.events.test_delivery import push
from tests.server import children_of

COMM = "ocireg-events"  # the delivery process's name (/proc/<pid>/comm)


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def delivery_pids(master: int) -> list[int]:
    return [pid for pid in children_of(master) if comm(pid) == COMM]


def wait_delivery_pid(master: int, other_than: int | None = None, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid in delivery_pids(master) if pid != other_than and alive(pid)]
        if pids:
            assert len(pids) == 1, pids
            return pids[0]
        time.sleep(0.1)
    raise AssertionError(f"no delivery process under {master}: {children_of(master)}")


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [p for p in pids if alive(p)]
        time.sleep(0.1)


def test_one_delivery_process_per_instance_restarted_when_killed(start_registry, receiver):
    registry = start_registry([{"name": "ci", "url": receiver.url,
                                "actions": ["manifest.pushed"]}], workers=2)
    master = registry.proc.pid
    first = wait_delivery_pid(master)
    assert len(children_of(master)) == 3  # two serving workers and the delivery process
    # Frozen before any event exists (so it holds no lease): the workers don't deliver.
    os.kill(first, signal.SIGSTOP)
    try:
        digests = [push(registry.url, "proc/app", f"v{i}") for i in range(3)]
        time.sleep(3.0)  # a worker delivering would have sent them by now
        assert receiver.requests == []
    finally:
        os.kill(first, signal.SIGKILL)
    second = wait_delivery_pid(master, other_than=first)
    bodies = receiver.wait_for(lambda b: len(b) >= 3)
    time.sleep(2.0)  # anything sent twice would have arrived by now
    bodies = receiver.bodies()
    assert [b["digest"] for b in bodies] == digests  # each once, in commit order
    assert not alive(first) and alive(second)
    assert registry.proc.poll() is None


def test_commits_wake_the_delivery_process(start_registry, receiver):
    # A poll interval of a minute: the process's timer first fires after 30 s or more,
    # so an event delivered sooner was found through the workers' wake-ups.
    registry = start_registry([{"name": "ci", "url": receiver.url,
                                "actions": ["manifest.pushed"]}], poll_interval_seconds=60)
    wait_delivery_pid(registry.proc.pid)
    started = time.monotonic()
    push(registry.url, "wake/app", "v1")
    receiver.wait_for(lambda b: len(b) == 1, timeout=25)
    assert time.monotonic() - started < 30  # (the bound the test stands on)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_server_stops_its_delivery_process(start_registry, receiver, sig):
    registry = start_registry([{"name": "ci", "url": receiver.url}])
    master = registry.proc.pid
    delivery = wait_delivery_pid(master)
    workers = children_of(master)
    push(registry.url, "stop/app", "v1")
    receiver.wait_for(lambda b: len(b) >= 1)  # it has a sender, with a lease
    registry.stop(sig)
    # The master reaps it before it exits: gone at once, not left behind.
    assert not alive(delivery)
    wait_gone(workers)


def test_a_killed_master_takes_its_delivery_process_along(start_registry, receiver):
    registry = start_registry([{"name": "ci", "url": receiver.url}])
    master = registry.proc.pid
    delivery = wait_delivery_pid(master)
    workers = children_of(master)
    registry.proc.send_signal(signal.SIGKILL)
    registry.proc.wait()
    try:
        wait_gone([delivery])  # PR_SET_PDEATHSIG, or its check of its parent
        wait_gone(workers)  # (gunicorn's workers notice on their own)
    finally:
        for pid in workers + [delivery]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_no_delivery_process_when_the_instance_does_not_deliver(start_registry, receiver):
    registry = start_registry([{"name": "ci", "url": receiver.url}], deliver=False)
    time.sleep(2.0)  # the master's loop has run
    assert delivery_pids(registry.proc.pid) == []
    assert len(children_of(registry.proc.pid)) == 2


def _wait_log(registry, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in registry.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.1)


def test_no_endpoint_no_delivery_process_until_one_is_added(start_registry, receiver):
    # An instance without receivers keeps no delivery process (its memory is the
    # cost); adding an endpoint through the API starts one at once.
    registry = start_registry([], poll_interval_seconds=60)
    master = registry.proc.pid
    _wait_log(registry, "no endpoint enabled, no delivery process")
    before = push(registry.url, "idle/app", "v0")  # committed while nobody delivers
    time.sleep(2.0)  # the master's loop has run since
    assert [p for p in delivery_pids(master) if alive(p)] == []
    assert len(children_of(master)) == 2  # the two serving workers
    r = requests.post(f"{registry.url}/api/v1/events/endpoints",
                      json={"name": "late", "url": receiver.url,
                            "actions": ["manifest.pushed"]}, timeout=30)
    assert r.status_code == 201, r.text
    # Not found by the idle recheck (5 min) nor a poll (60 s): woken by the API.
    wait_delivery_pid(master, timeout=25)
    after = push(registry.url, "idle/app", "v1")
    bodies = receiver.wait_for(lambda b: any(x["digest"] == after for x in b), timeout=25)
    assert before not in [b["digest"] for b in bodies]  # it was sent to nobody


def test_re_enabling_an_endpoint_through_patch_starts_the_idle_delivery_process(
        start_registry, receiver):
    # An endpoint added disabled leaves the instance idle; PATCH enabled: true wakes
    # the master as a create does (not the 5-minute recheck, not the 60 s poll).
    registry = start_registry([], poll_interval_seconds=60)
    master = registry.proc.pid
    r = requests.post(f"{registry.url}/api/v1/events/endpoints",
                      json={"name": "later", "url": receiver.url, "enabled": False,
                            "actions": ["manifest.pushed"]}, timeout=30)
    assert r.status_code == 201, r.text
    _wait_log(registry, "no endpoint enabled, no delivery process")
    time.sleep(2.0)  # the master's loop has run since the disabled create
    assert [p for p in delivery_pids(master) if alive(p)] == []
    r = requests.patch(f"{registry.url}/api/v1/events/endpoints/later",
                       json={"enabled": True}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is True
    wait_delivery_pid(master, timeout=25)
    pushed = push(registry.url, "idle/again", "v1")
    receiver.wait_for(lambda b: any(x["digest"] == pushed for x in b), timeout=25)
