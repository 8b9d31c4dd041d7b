"""Robot accounts' tokens, on a real SQLite index: scope, expiry, revocation, last use."""

from __future__ import annotations

from pathlib import Path

import pytest

from ociregistry.auth.robots import (
    USE_INTERVAL,
    RobotError,
    RobotRefused,
    RobotService,
    parse_duration,
    parse_scope,
    split_token,
)
from ociregistry.auth.rules import AccessRules
from ociregistry.config import RobotSettings, Settings
from ociregistry.metadata import robot_queries
from ociregistry.runtime import build_runtime


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(tmp_path: Path, clock: Clock, **settings) -> RobotService:  # noqa: ANN003
    runtime = build_runtime(Settings(data_dir=str(tmp_path)), migrate=True)
    return RobotService(runtime.metadata, RobotSettings(**settings), clock)


def test_scope_parsing_and_matching():
    scope = parse_scope(["ci/**:pull,push", "tools/*:pull", "junk/x:*"])
    assert [str(e) for e in scope] == ["ci/**:pull,push", "tools/*:pull",
                                       "junk/x:pull,push,delete"]
    for bad in ("ci/**", "ci/**:admin", ":pull", "CI/x:pull", "ci/${user}:pull", "a b:pull"):
        with pytest.raises(RobotError):
            parse_scope([bad])
    with pytest.raises(RobotError):
        parse_scope([])


def test_grant_allows_only_its_scope(tmp_path, clock):
    robots = service(tmp_path, clock)
    info, token = robots.create("ci", parse_scope(["ci/**:pull,push", "base/*:pull"]))
    grant = robots.authenticate("robot$ci", token)
    assert grant.user == "robot$ci" and grant.token_id == info.id
    assert grant.allows("ci/app/x", "push") and grant.allows("ci/app", "pull")
    assert not grant.allows("ci/app", "delete")
    assert grant.allows("base/alpine", "pull") and not grant.allows("base/alpine", "push")
    assert not grant.allows("base/a/b", "pull")  # * stays within one path component
    assert not grant.allows("other", "pull")
    assert grant.pull_filter()("base/alpine") and not grant.pull_filter()("other")


def test_token_format_and_wrong_credentials(tmp_path, clock):
    robots = service(tmp_path, clock)
    info, token = robots.create("ci", parse_scope(["**:pull"]))
    assert token.startswith(f"ocr_{info.id}_") and split_token(token) is not None
    token_id, secret = split_token(token)
    # Only the hash is stored.
    row = robot_queries.get(robots.store, token_id)
    assert secret not in row.secret_hash and token not in repr(row.__dict__)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for user, password, reason in (
        ("robot$ci", wrong, "bad_secret"),
        ("robot$other", token, "unknown"),  # another robot's name
        ("robot$ci", "hunter2", "malformed"),
        ("robot$ci", f"ocr_{'0' * 12}_{secret}", "unknown"),
    ):
        with pytest.raises(RobotRefused) as caught:
            robots.authenticate(user, password)
        assert caught.value.reason == reason


def test_expiry_is_checked_on_every_use(tmp_path, clock):
    robots = service(tmp_path, clock)
    _, token = robots.create("ci", parse_scope(["**:pull"]), expires_in=3600)
    robots.authenticate("robot$ci", token)
    clock.now += 3599
    robots.authenticate("robot$ci", token)
    clock.now += 1
    with pytest.raises(RobotRefused) as caught:
        robots.authenticate("robot$ci", token)
    assert caught.value.reason == "expired"


def test_revocation_is_seen_by_another_service_on_the_same_index(tmp_path, clock):
    robots = service(tmp_path, clock)
    other = service(tmp_path, clock)  # another process, same database
    info, token = robots.create("ci", parse_scope(["**:pull"]))
    second, token2 = robots.create("ci", parse_scope(["**:pull"]))
    other.authenticate("robot$ci", token)
    assert robots.revoke(token_id=info.id) == [info.id]
    with pytest.raises(RobotRefused) as caught:
        other.authenticate("robot$ci", token)
    assert caught.value.reason == "revoked"
    with pytest.raises(RobotRefused):
        other.check(info.id, "robot$ci")  # the bearer-token path too
    other.authenticate("robot$ci", token2)  # its other token still works
    assert robots.revoke(name="ci") == [second.id]
    with pytest.raises(RobotRefused):
        other.authenticate("robot$ci", token2)
    assert robots.revoke(name="ci") == []
    assert robots.list() == [] and len(robots.list(include_revoked=True)) == 2


def test_disabled_robots_are_refused(tmp_path, clock):
    robots = service(tmp_path, clock)
    _, token = robots.create("ci", parse_scope(["**:pull"]))
    off = RobotService(robots.store, RobotSettings(enabled=False), clock)
    with pytest.raises(RobotRefused):
        off.authenticate("robot$ci", token)
    with pytest.raises(RobotError):
        off.create("ci2", parse_scope(["**:pull"]))


def test_lifetimes_respect_the_configured_limits(tmp_path, clock):
    robots = service(tmp_path, clock, default_expiry_days=10, max_lifetime_days=30)
    info, _ = robots.create("ci", parse_scope(["**:pull"]))
    assert info.expires_at == clock.now + 10 * 86400
    with pytest.raises(RobotError):
        robots.create("ci", parse_scope(["**:pull"]), expires_in=31 * 86400)
    with pytest.raises(RobotError):
        robots.create("ci", parse_scope(["**:pull"]), expires_in=None)  # never
    unlimited = RobotService(robots.store, RobotSettings(max_lifetime_days=0), clock)
    assert unlimited.create("ci", parse_scope(["**:pull"]), expires_in=None)[0].expires_at is None
    assert parse_duration("30d") == 30 * 86400 and parse_duration("never") is None
    for bad in ("0d", "30", "1 d", "-1d", "soon"):
        with pytest.raises(RobotError):
            parse_duration(bad)
    for bad in ("", "Robot", "-ci", "a" * 65, "ci$", "c/i"):
        with pytest.raises(RobotError):
            robots.create(bad, parse_scope(["**:pull"]))


def test_last_used_is_written_at_most_once_a_minute(tmp_path, clock):
    robots = service(tmp_path, clock)
    info, token = robots.create("ci", parse_scope(["**:pull"]))
    writes = []
    real_touch = robot_queries.touch

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        writes.append(args)
        return real_touch(*args, **kwargs)

    robot_queries.touch = counting
    try:
        first = clock.now
        for _ in range(50):
            robots.authenticate("robot$ci", token)
            clock.now += 1  # 50 uses over 50 seconds
        assert len(writes) == 1
        assert robots.list()[0].last_used_at == first
        clock.now = first + USE_INTERVAL
        robots.authenticate("robot$ci", token)
        assert len(writes) == 2
        assert robots.list()[0].last_used_at == first + USE_INTERVAL
    finally:
        robot_queries.touch = real_touch


def test_rules_never_make_a_robot_an_admin():
    rules = AccessRules.from_config(
        [{"users": ["robot$ci", "root"], "actions": ["admin"]},
         {"groups": ["robots"], "repositories": ["ci/**"], "actions": ["pull", "push"]}],
    )
    assert rules.is_admin("root") and not rules.is_admin("robot$ci")
    assert rules.allowed_actions("robot$ci", "ci/app") == {"pull", "push"}
    assert rules.allowed_actions("robot$ci", "other") == frozenset()
    assert not rules.pull_filter("robot$ci")("other")
    assert rules.groups_of("robot$x") == {"robots"} and rules.groups_of("alice") == frozenset()


def test_robot_tokens_never_reach_the_logs():
    from ociregistry.auth.redact import redact

    token = "ocr_0123456789ab_" + "A" * 20 + "_-" + "b" * 21
    assert redact(f"login failed for robot$ci with {token}!") == (
        "login failed for robot$ci with ocr_0123456789ab_[REDACTED]!")


def test_the_command_line_loads_prometheus_only_when_a_command_needs_it():
    """`serve` sets up multiprocess metrics before prometheus_client is imported: the
    token commands (which count robot logins) must not import it with the CLI."""
    import subprocess
    import sys

    code = "import sys, ociregistry.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "False"
