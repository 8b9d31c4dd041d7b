"""faults.unavailable: a dependency that is down, told apart from a bug.

Real failures where they can be had: a PostgreSQL port nobody listens on, an
S3 endpoint nobody listens on, a constraint violated in a real SQLite database.
"""

from __future__ import annotations

import sqlalchemy as sa
from botocore.exceptions import ClientError

from ociregistry.config import S3Settings
from ociregistry.faults import unavailable
from ociregistry.metadata.engine import create_engine
from ociregistry.storage.s3 import S3Storage
from tests.server import free_port


def _raised(call) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception is what is tested
        return exc
    raise AssertionError("nothing was raised")


def test_a_postgresql_server_that_refuses_is_the_database_down():
    engine = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    try:
        exc = _raised(lambda: engine.connect().close())
    finally:
        engine.dispose()
    assert isinstance(exc, sa.exc.OperationalError)
    assert unavailable(exc) == "database"


def test_a_constraint_violation_is_a_bug_not_an_outage(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    def duplicate() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    exc = _raised(duplicate)
    engine.dispose()
    assert isinstance(exc, sa.exc.IntegrityError)
    assert unavailable(exc) is None
    assert unavailable(ValueError("bad input")) is None


def test_an_s3_endpoint_that_refuses_is_the_storage_down():
    storage = S3Storage(S3Settings(
        bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="a",
        secret_key="s", max_attempts=1, connect_timeout_seconds=2))
    exc = _raised(lambda: storage.blob_size("sha256:" + "0" * 64))
    assert unavailable(exc) == "storage"
    # Raised from inside another exception (an upload's rollback failing too).
    try:
        try:
            raise exc
        except Exception as inner:
            raise RuntimeError("while rolling back") from inner
    except RuntimeError as outer:
        assert unavailable(outer) == "storage"


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_store_answers_5xx_are_an_outage_4xx_are_not():
    assert unavailable(_client_error(500, "InternalError")) == "storage"
    assert unavailable(_client_error(503, "SlowDown")) == "storage"
    assert unavailable(_client_error(403, "AccessDenied")) is None
    assert unavailable(_client_error(404, "NoSuchKey")) is None
