"""The actor the core sees: set per request by the web layer, reset after it."""

import threading

from ociregistry.core.actor import SYSTEM, Actor, acting_as, current_actor


def test_default_is_system_and_acting_as_restores() -> None:
    assert current_actor() is SYSTEM
    with acting_as(Actor("user", "alice")) as who:
        assert current_actor() == who
    assert current_actor() is SYSTEM


def test_as_user_keeps_address_and_request() -> None:
    anon = Actor("anonymous", None, "127.0.0.1", "r1")
    assert anon.as_user("bob") == Actor("user", "bob", "127.0.0.1", "r1")
    assert anon.as_user("robot$ci", robot=True).kind == "robot"
    assert anon.as_user(None).kind == "anonymous"
    assert Actor("user", "bob").label == "bob" and SYSTEM.label == "system"


def test_threads_do_not_share_an_actor() -> None:
    seen: list[Actor] = []
    with acting_as(Actor("user", "alice")):
        worker = threading.Thread(target=lambda: seen.append(current_actor()))
        worker.start()
        worker.join()
    assert seen == [SYSTEM]
