"""Access rules, scopes and grants, htpasswd and redaction: unit tests (no server)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ociregistry.auth import redact
from ociregistry.auth.htpasswd import Htpasswd, HtpasswdError
from ociregistry.auth.ratelimit import RateLimiter, retry_after
from ociregistry.auth.rules import AccessRules, glob_match
from ociregistry.auth.service import AuthService
from ociregistry.auth.tokens import Scope, parse_scope, parse_scopes
from ociregistry.config import load_settings
from tests.auth.support import GROUPS, RULES, write_htpasswd


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("team-a/*", "team-a/app", True),
    ("team-a/*", "team-a/app/sub", False),  # * stays within one component
    ("team-a/**", "team-a/app/sub", True),
    ("team-a/**", "team-a", False),
    ("team-a/*", "team-ab/app", False),
    ("*", "alpine", True),
    ("*", "library/alpine", False),
    ("**", "library/alpine", True),
    ("lib?ary/*", "library/x", True),
    ("lib?ary/*", "lib/ary/x", False),
    ("a.b/*", "aXb/c", False),  # a dot is a dot, not a regex wildcard
    ("team-[a]/*", "team-a/x", False),  # brackets are literal
])
def test_glob(pattern, name, expected):
    assert glob_match(pattern, name) is expected


def test_user_placeholder_is_literal_and_never_anonymous():
    assert glob_match("users/${user}/**", "users/alice/x", "alice")
    assert not glob_match("users/${user}/**", "users/alice/x", "bob")
    assert not glob_match("users/${user}/**", "users/alice/x", None)
    # A user name with glob characters can't widen the pattern.
    assert not glob_match("users/${user}/*", "users/ax/x", "a.")
    assert not glob_match("users/${user}/*", "users/anything/x", "*")


@pytest.fixture
def rules() -> AccessRules:
    return AccessRules.from_config(RULES, GROUPS)


def test_rules_grant_by_group_user_and_anonymous(rules):
    assert rules.allowed_actions("alice", "team-a/app") == {"pull", "push"}
    assert rules.allowed_actions("bob", "team-a/app") == {"pull"}
    assert rules.allowed_actions("carol", "team-a/app") == set()
    assert rules.allowed_actions(None, "team-a/app") == set()
    assert rules.allowed_actions(None, "public/x") == {"pull"}
    assert rules.allowed_actions("carol", "public/x") == {"pull", "push", "delete"}
    assert rules.allowed_actions("alice", "users/alice/x") == {"pull", "push", "delete"}
    assert rules.allowed_actions("alice", "users/bob/x") == set()
    assert rules.allowed_actions("root", "anything/at/all") == {"pull", "push", "delete"}
    assert rules.is_admin("root") and not rules.is_admin("alice") and not rules.is_admin(None)


def test_nothing_is_allowed_without_rules():
    empty = AccessRules.from_config([])
    assert empty.allowed_actions(None, "x") == set()
    assert empty.allowed_actions("alice", "x") == set()


def test_anonymous_user_name_in_rules_means_no_credentials():
    rules = AccessRules.from_config([{"users": ["anonymous"], "actions": ["pull"]}])
    assert rules.allows(None, "x", "pull")


def test_pull_filter_for_the_catalog(rules):
    names = ["public/a", "team-a/b", "users/alice/c", "users/bob/d", "other"]
    assert [n for n in names if rules.pull_filter("alice")(n)] == [
        "public/a", "team-a/b", "users/alice/c"]
    assert [n for n in names if rules.pull_filter(None)(n)] == ["public/a"]
    assert [n for n in names if rules.pull_filter("root")(n)] == names


@pytest.mark.parametrize(("raw", "expected"), [
    ("repository:samalba/my-app:pull,push",
     Scope("repository", "samalba/my-app", ("pull", "push"))),
    ("repository:localhost:5000/app:pull", Scope("repository", "localhost:5000/app", ("pull",))),
    ("repository(plugin):a/b:pull", Scope("repository", "a/b", ("pull",))),
    ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
    ("repository:a:pull,pull", Scope("repository", "a", ("pull",))),
    ("repository:a:", None),
    ("repository::pull", None),
    ("repository", None),
    ("Repository:a:pull", None),
    ("repository:a:pull;rm", None),
])
def test_parse_scope(raw, expected):
    assert parse_scope(raw) == expected


def test_parse_scopes_splits_on_spaces_and_skips_garbage():
    scopes = parse_scopes(["repository:a:pull repository:b:push", "junk", "registry:catalog:*"])
    assert [str(s) for s in scopes] == [
        "repository:a:pull", "repository:b:push", "registry:catalog:*"]


def _service(tmp_path: Path, **auth) -> AuthService:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    conf = {"htpasswd": str(htpasswd), "rules": RULES, "groups": GROUPS,
            "token": {"enabled": True}, **auth}
    return AuthService(load_settings(environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "auth": conf}))


def test_grant_is_the_intersection(tmp_path):
    service = _service(tmp_path)
    scopes = parse_scopes([
        "repository:team-a/app:pull,push,delete",  # delete dropped
        "repository:team-b/app:pull",  # nothing: dropped entirely
        "repository:../etc:pull",  # not a repository name
        "registry:catalog:*",
        "registry:admin:*",  # only for admins
        "unknown:x:pull",
    ])
    assert service.grant("alice", scopes) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert service.grant("bob", scopes)[0]["actions"] == ["pull"]
    assert service.grant(None, scopes) == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    root = service.grant("root", scopes)
    assert {"type": "registry", "name": "admin", "actions": ["*"]} in root
    star = service.grant("alice", parse_scopes(["repository:users/alice/x:*"]))
    assert star[0]["actions"] == ["pull", "push", "delete"]


def test_signing_key_is_generated_once_and_reused(tmp_path):
    first = _service(tmp_path)
    key_file = tmp_path / "data" / "auth" / "token-signing-key.pem"
    assert key_file.exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = _service(tmp_path)
    assert first.issuer.kid == second.issuer.kid


def test_rsa_keys_and_a_configured_key_file(tmp_path):
    service = _service(tmp_path, token={"enabled": True, "algorithm": "RS256",
                                        "key": str(tmp_path / "k.pem")})
    assert service.issuer.algorithm == "RS256"
    token = service.issue("alice", []).token
    assert service.bearer(token).user == "alice"
    with pytest.raises(ValueError):  # the RSA key does not fit ES256
        _service(tmp_path, token={"enabled": True, "algorithm": "ES256",
                                  "key": str(tmp_path / "k.pem")})


def test_external_issuer_needs_a_realm_and_excludes_the_builtin(tmp_path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="realm"):
        _service(tmp_path, token={"jwks": str(jwks)})
    with pytest.raises(ValueError, match="exclusive"):
        _service(tmp_path, token={"jwks": str(jwks), "enabled": True, "realm": "https://x"})


# -- htpasswd ---------------------------------------------------------------------------
def test_htpasswd_verify_and_reload(tmp_path):
    path = tmp_path / "htpasswd"
    users = Htpasswd(str(path), check_interval=0)
    users.set_password("alice", "one", cost=4)
    assert users.verify("alice", "one")
    assert not users.verify("alice", "two")
    assert not users.verify("nobody", "one")
    assert not users.verify("alice", "one" + "x" * 100)
    # Another writer (htpasswd -B, another process) changes the file.
    Htpasswd(str(path)).set_password("alice", "two", cost=4)
    assert users.verify("alice", "two")
    assert not users.verify("alice", "one")  # the cached success is gone too


def test_htpasswd_skips_non_bcrypt_lines(tmp_path, caplog):
    path = tmp_path / "htpasswd"
    path.write_text("md5:$apr1$abc$def\nplain:secret\n# comment\n\nbad line\n")
    users = Htpasswd(str(path))
    assert users.users() == []
    assert not users.verify("plain", "secret")


def test_htpasswd_refuses_bad_names_and_passwords(tmp_path):
    users = Htpasswd(str(tmp_path / "h"))
    for name in ("anonymous", "*", "a:b", "", "a b", "x" * 200):
        with pytest.raises(HtpasswdError):
            users.set_password(name, "pw", cost=4)
    with pytest.raises(HtpasswdError):
        users.set_password("alice", "", cost=4)
    with pytest.raises(HtpasswdError):
        users.set_password("alice", "x" * 73, cost=4)
    with pytest.raises(HtpasswdError):
        users.remove("alice")


def test_htpasswd_file_is_private(tmp_path):
    path = tmp_path / "h"
    Htpasswd(str(path)).set_password("alice", "pw", cost=4)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


# -- rate limiting, redaction -------------------------------------------------------------
def test_token_bucket():
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.check("a", now=100.0) for _ in range(3)] == [0, 0, 0]
    wait = limiter.check("a", now=100.0)
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    assert limiter.check("b", now=100.0) == 0  # another key has its own bucket
    assert limiter.check("a", now=101.0) == 0  # refilled at 2 per second
    assert RateLimiter(rate=0, burst=1).check("a") == 0


@pytest.mark.parametrize("secret_text", [
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "{'HTTP_AUTHORIZATION': 'Bearer abc.def.ghi'}",
    "headers={'Authorization': 'Bearer eyJhbGciOi.eyJzdWIiOi.sig'}",
    "token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    "grant_type=password&username=alice&password=s3cret&client_id=x",
    '{"refresh_token": "s3cret"}',
    "alice:$2b$04$IqVAe3RQasZsPrfIqRW8Juy9WX6VBHHguZmwILWsiwSAh1S.4bf1a",
])
def test_redaction(secret_text):
    cleaned = redact.redact(secret_text)
    for secret in ("YWxpY2U6c2VjcmV0", "abc.def.ghi", "eyJzdWIiOi", "s3cret",
                   "IqVAe3RQasZsPrfIqRW8Ju"):
        assert secret not in cleaned, cleaned
    assert "[REDACTED]" in cleaned


def test_redaction_applies_to_every_log_record(caplog):
    redact.install()
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("request headers: %s",
                                               {"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert "YWxpY2U6c2VjcmV0" not in caplog.text
    assert "[REDACTED]" in caplog.text


def test_the_readme_worked_example_does_what_the_readme_says():
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("A worked example:", 1)[1]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", block, re.S)[1])["auth"]
    rules = AccessRules.from_config(config["rules"], config["groups"])
    every = {"pull", "push", "delete"}
    table = {
        "alice": [{"pull", "push"}, {"pull", "push"}, set(), {"pull"}],
        "bob": [{"pull"}, {"pull"}, every, {"pull"}],
        "carol": [set(), set(), set(), every],
        None: [set(), set(), set(), {"pull"}],
        "root": [every, every, every, every],
    }
    repos = ["team-a/app", "team-a/app/arm64", "users/bob/tool", "public/base"]
    for user, expected in table.items():
        assert [rules.allowed_actions(user, r) for r in repos] == expected, user
    assert rules.is_admin("root") and not rules.is_admin("alice")
    assert not glob_match("team-a/*", "team-a/app/arm64")
