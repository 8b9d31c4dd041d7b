"""An upload session's row, read on a pooled driver connection (metadata/upload_store.py
get_upload): the same UploadRow, value for value and type for type, as the statement
run inside a SQLAlchemy transaction gives; None for another repository's or a gone one."""

from __future__ import annotations

from pathlib import Path

from ociregistry.metadata import write_statements as w
from ociregistry.metadata.store import MetadataStore, UploadRow


def check_upload_rows(db: MetadataStore) -> None:
    with db.write() as conn:
        repo = db.ensure_repository(conn, "team/rows")
        db.ensure_repository(conn, "team/other")
        db.create_upload(conn, "u-rows", repo, "sha256", owner="alice")
    assert db.save_upload("u-rows", 1234, b"\x00\xffstate", {"parts": [1, 2]})
    row = db.get_upload("team/rows", "u-rows")
    with db.read() as conn:
        expected = UploadRow(**w.get_upload(conn, "team/rows", "u-rows"))  # type: ignore[arg-type]
    assert row == expected
    assert {k: type(v) for k, v in vars(row).items()} == {
        k: type(v) for k, v in vars(expected).items()}
    assert (row.size, row.owner, row.hash_state, row.storage) == (
        1234, "alice", b"\x00\xffstate", {"parts": [1, 2]})
    assert db.get_upload("team/other", "u-rows") is None
    assert db.get_upload("team/rows", "no-such") is None
    with db.write() as conn:
        db.delete_upload(conn, "u-rows")
    assert db.get_upload("team/rows", "u-rows") is None


def test_the_upload_row_read_on_a_driver_connection(tmp_path: Path) -> None:
    db = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    db.create_schema()
    try:
        check_upload_rows(db)
    finally:
        db.dispose()
