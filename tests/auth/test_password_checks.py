"""What a password check costs: the same bcrypt work whether the user exists or not.

Timing is not measured (it would be flaky on a loaded machine); the bcrypt
calls are counted instead, with the cost of the hash each one checks against.
"""

from __future__ import annotations

from collections.abc import Iterator

import bcrypt
import pytest

from ociregistry.auth.htpasswd import Htpasswd
from tests.auth.support import basic


@pytest.fixture
def bcrypt_calls(monkeypatch) -> Iterator[list[tuple[str, int]]]:
    """Every bcrypt hashpw/checkpw call from now on, as (function, cost); calls go through."""
    calls: list[tuple[str, int]] = []
    real_check, real_hash = bcrypt.checkpw, bcrypt.hashpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(("checkpw", int(hashed[4:6])))
        return real_check(password, hashed)

    def hashpw(password: bytes, salt: bytes) -> bytes:
        calls.append(("hashpw", int(salt[4:6])))
        return real_hash(password, salt)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    yield calls


def _file(tmp_path, costs: dict[str, int]) -> Htpasswd:
    users = Htpasswd(str(tmp_path / "htpasswd"))
    for user, cost in costs.items():
        users.set_password(user, f"{user}-pw", cost=cost)
    return users


def test_an_unknown_user_costs_one_check_at_the_cost_of_known_users(tmp_path, bcrypt_calls):
    # Mixed costs, the odd one first in the file: the usual cost is the one to copy.
    users = _file(tmp_path, {"aaron": 4, "alice": 5, "bob": 5, "carol": 5})
    assert users.users()  # the file is read (and anything it needs prepared) here
    bcrypt_calls.clear()
    assert not users.verify("alice", "wrong")
    assert bcrypt_calls == [("checkpw", 5)]
    bcrypt_calls.clear()
    assert not users.verify("mallory", "wrong")
    assert bcrypt_calls == [("checkpw", 5)]  # one check, same cost, nothing else first
    bcrypt_calls.clear()
    assert not users.verify("alice", "x" * 100)  # over bcrypt's 72 bytes
    assert bcrypt_calls == [("checkpw", 5)]


def test_basic_on_the_api_checks_an_unknown_user_like_a_known_one(make_registry, bcrypt_calls):
    c = make_registry("basic")  # the test users, all at cost 4
    assert c.get("/v2/", headers=basic("alice")).status_code == 200
    bcrypt_calls.clear()
    assert c.get("/v2/", headers=basic("alice", "wrong")).status_code == 401
    known = list(bcrypt_calls)
    bcrypt_calls.clear()
    assert c.get("/v2/", headers=basic("nobody-here", "wrong")).status_code == 401
    assert bcrypt_calls == known == [("checkpw", 4)]
