"""Administration services (core/admin_*.py) on a real SQLite index and htpasswd file:
users and groups, robot tokens, garbage collection runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import bcrypt
import pytest

from ociregistry.admin.errors import Conflict, InvalidRequest, NotConfigured, NotFound
from ociregistry.admin.gc import GCAdmin
from ociregistry.admin.robots import RobotAdmin, token_dict
from ociregistry.admin.users import UserAdmin
from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.auth.robots import RobotService
from ociregistry.auth.rules import AccessRules
from ociregistry.auth.sessions import UISessions
from ociregistry.config import RobotSettings, Settings
from ociregistry.core.gc_jobs import GCJobs
from ociregistry.runtime import build_runtime

RULES = AccessRules.from_config(
    [{"groups": ["ops"], "actions": ["admin"]},
     {"users": ["alice"], "repositories": ["team/**"], "actions": ["pull"]}],
    {"ops": ["root"], "devs": ["alice", "bob"]},
)


def runtime_on(data_dir: Path):  # noqa: ANN201 - a Runtime
    return build_runtime(Settings(data_dir=str(data_dir)), migrate=True)


@pytest.fixture
def users(tmp_path: Path) -> tuple[UserAdmin, UISessions]:
    runtime = runtime_on(tmp_path / "data")
    sessions = UISessions(runtime.metadata, 3600)
    path = tmp_path / "htpasswd"
    return UserAdmin(Htpasswd(str(path)), RULES, sessions, bcrypt_cost=5), sessions


def stamp(_user: str) -> str:
    return "same"


def test_users_are_created_listed_and_hashed_at_the_configured_cost(users):
    admin, _ = users
    assert admin.list_users() == []
    admin.create("root", "root-pw")
    admin.create("alice", "alice-pw")
    listed = {u.name: u for u in admin.list_users()}
    assert list(listed) == ["alice", "root"]
    assert listed["root"].admin and listed["root"].groups == ("ops",)
    assert not listed["alice"].admin and listed["alice"].groups == ("devs",)
    line = Path(admin.htpasswd.path).read_text().splitlines()[1]
    assert line.startswith("root:$2b$05$")
    assert bcrypt.checkpw(b"root-pw", line.split(":", 1)[1].encode())
    assert admin.htpasswd.verify("alice", "alice-pw")
    with pytest.raises(Conflict):
        admin.create("alice", "other")
    for bad_name, pw in (("anonymous", "x"), ("a b", "x"), ("robot$ci", "x"), ("carol", ""),
                         ("carol", "x" * 73)):
        with pytest.raises(InvalidRequest):
            admin.create(bad_name, pw)
    assert admin.get_user("alice").name == "alice"
    with pytest.raises(NotFound):
        admin.get_user("carol")


def test_groups_come_from_the_config_and_say_they_are_read_only(users):
    admin, _ = users
    groups = {g.name: g.as_dict() for g in admin.list_groups()}
    assert groups == {
        "devs": {"name": "devs", "members": ["alice", "bob"], "admin": False, "read_only": True},
        "ops": {"name": "ops", "members": ["root"], "admin": True, "read_only": True},
    }


def test_a_new_password_or_a_deletion_ends_the_users_ui_sessions(users):
    admin, sessions = users
    admin.create("alice", "one")
    admin.create("bob", "bob-pw")
    first, second = sessions.start("alice", "same"), sessions.start("alice", "same")
    bobs = sessions.start("bob", "same")
    change = admin.set_password("alice", "two")
    assert change.sessions_ended == 2
    assert sessions.user(first, stamp) is None and sessions.user(second, stamp) is None
    assert sessions.user(bobs, stamp) == "bob"
    assert admin.htpasswd.verify("alice", "two") and not admin.htpasswd.verify("alice", "one")
    assert admin.delete("bob").sessions_ended == 1
    assert sessions.user(bobs, stamp) is None
    assert [u.name for u in admin.list_users()] == ["alice"]
    with pytest.raises(NotFound):
        admin.delete("bob")
    with pytest.raises(NotFound):
        admin.set_password("bob", "x")


def test_concurrent_creations_all_land_in_the_file(tmp_path):
    """Each worker process has its own Htpasswd: the file lock keeps every write."""
    path = str(tmp_path / "htpasswd")
    admins = [UserAdmin(Htpasswd(path), RULES, None, bcrypt_cost=4) for _ in range(8)]
    barrier = threading.Barrier(len(admins))

    def create(i: int) -> None:
        barrier.wait()
        admins[i].create(f"user{i}", "pw")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(admins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Htpasswd(path).users() == sorted(f"user{i}" for i in range(len(admins)))


def test_without_an_htpasswd_file_users_are_not_configured(tmp_path):
    admin = UserAdmin(None, RULES, None)
    with pytest.raises(NotConfigured):
        admin.list_users()
    with pytest.raises(NotConfigured):
        admin.create("alice", "pw")
    assert [g.name for g in admin.list_groups()] == ["devs", "ops"]


def test_robot_tokens_created_once_listed_without_secret_and_revoked(tmp_path):
    runtime = runtime_on(tmp_path)
    robots = RobotService(runtime.metadata, RobotSettings())
    admin = RobotAdmin(robots)
    info, token = admin.create("ci", ["ci/**:pull,push"], "30d", "builds", created_by="api:root")
    assert token.startswith(f"ocr_{info.id}_")
    assert robots.authenticate("robot$ci", token).allows("ci/app", "push")
    listed = [token_dict(t) for t in admin.tokens()]
    assert [t["id"] for t in listed] == [info.id]
    assert token not in repr(listed) and listed[0]["state"] == "active"
    assert listed[0]["scope"] == ["ci/**:pull,push"] and listed[0]["created_by"] == "api:root"
    assert 30 * 86400 - 60 < info.expires_at - info.created_at <= 30 * 86400
    _, other = admin.create("ci", ["ci/**:pull"])
    admin.create("deploy", ["prod/*:pull"])
    assert [(r.name, r.active_tokens) for r in admin.robots_list()] == [("ci", 2), ("deploy", 1)]
    for scope, expires in ((["ci/**"], None), (["ci/**:admin"], None), ([], None),
                           (["ci/**:pull"], "forever"), (["ci/**:pull"], "never")):
        with pytest.raises(InvalidRequest):  # never: max_lifetime_days is 365 by default
            admin.create("ci", scope, expires)
    with pytest.raises(InvalidRequest):
        admin.create("CI!", ["ci/**:pull"])
    admin.revoke_token(info.id)
    with pytest.raises(NotFound):
        admin.revoke_token(info.id)
    assert [t.id for t in admin.tokens("ci")] != [info.id]
    assert admin.revoke_robot("robot$ci") and not admin.tokens("ci")
    with pytest.raises(NotFound):
        admin.revoke_robot("ci")
    assert [t["state"] for t in map(token_dict, admin.tokens("ci", include_revoked=True))] \
        == ["revoked", "revoked"]


def test_robots_disabled_or_without_auth_are_not_configured(tmp_path):
    runtime = runtime_on(tmp_path)
    with pytest.raises(NotConfigured):
        RobotAdmin(None).tokens()
    disabled = RobotAdmin(RobotService(runtime.metadata, RobotSettings(enabled=False)))
    with pytest.raises(NotConfigured):
        disabled.create("ci", ["ci/**:pull"])


def wait_finished(gc: GCAdmin) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = gc.status()
        if not status["running"]:
            return status
        time.sleep(0.05)
    raise AssertionError(f"the run did not finish: {gc.status()}")


def test_gc_runs_start_report_progress_and_land_in_the_history(tmp_path):
    runtime = runtime_on(tmp_path)
    gc = GCAdmin(GCJobs(runtime.gc, runtime.registry))
    assert gc.status()["state"] == "idle" and gc.history() == []
    started = gc.start(dry_run=True, started_by="root")
    assert started["job"] and started["dry_run"] is True
    done = wait_finished(gc)
    assert done["state"] == "finished" and done["result"]["dry_run"] is True
    assert gc.job(started["job"]) == done and gc.job("nope") is None
    assert gc.history() == []  # dry runs change nothing and are not recorded
    for _ in range(3):
        gc.start()
        wait_finished(gc)
    runs = gc.history()
    assert len(runs) == 3 and [r["dry_run"] for r in runs] == [False] * 3
    assert runs[0]["id"] > runs[1]["id"] > runs[2]["id"]
    assert gc.history(limit=2, before=runs[0]["id"]) == runs[1:]
    with pytest.raises(InvalidRequest):
        gc.history(limit=0)


def test_gc_refused_while_another_holds_the_lock(tmp_path):
    runtime = runtime_on(tmp_path)
    gc = GCAdmin(GCJobs(runtime.gc, runtime.registry))
    assert runtime.metadata.try_lock("gc", "someone-else", ttl=60)
    with pytest.raises(Conflict):
        gc.start()
    assert gc.status()["elsewhere"] is True
    runtime.metadata.unlock("gc", "someone-else")


def test_gc_started_at_once_from_several_processes_never_refuses_a_given_job(tmp_path):
    """Each GCJobs stands for a worker process of its own (own store, own thread lock).
    Started at once, every start that answered a job id really runs (it holds the lock
    when it answers); the others are refused at once, never later in their thread."""
    runtimes = [runtime_on(tmp_path) for _ in range(6)]
    jobs = [GCJobs(r.gc, r.registry) for r in runtimes]
    barrier = threading.Barrier(len(jobs))
    results: list[str | None] = [None] * len(jobs)

    def start(i: int) -> None:
        barrier.wait()
        results[i] = jobs[i].start(dry_run=False, delete_untagged=False, started_by=str(i))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = [job for job in results if job]
    assert started
    gc = GCAdmin(jobs[0])
    wait_finished(gc)  # a job given an id holds the lock until its run has ended
    assert len(gc.history()) == len(started), (results, gc.status())
    assert gc.status()["state"] == "finished"
