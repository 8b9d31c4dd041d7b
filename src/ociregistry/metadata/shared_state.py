"""Named values in the index, the same for every process and instance."""

from __future__ import annotations

import time

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def get(db: MetadataStore, name: str) -> str | None:
    with db.read() as conn:
        return conn.execute(
            sa.select(t.shared_state.c.value).where(t.shared_state.c.name == name)
        ).scalar()


def put(db: MetadataStore, name: str, value: str) -> None:
    s = t.shared_state
    for _ in range(2):
        try:
            with db.write() as conn:
                updated = conn.execute(
                    s.update().where(s.c.name == name).values(value=value, updated_at=time.time())
                ).rowcount
                if not updated:
                    conn.execute(s.insert().values(name=name, value=value,
                                                   updated_at=time.time()))
            return
        except sa.exc.IntegrityError:
            continue  # another instance inserted it meanwhile: update theirs
    raise RuntimeError(f"could not store {name}")


def get_or_create(db: MetadataStore, name: str, value: str) -> str:
    """The stored value; ``value`` is stored first when there is none (the first
    process to ask wins, the others read what it stored)."""
    found = get(db, name)
    if found is not None:
        return found
    try:
        with db.write() as conn:
            conn.execute(t.shared_state.insert().values(
                name=name, value=value, updated_at=time.time()))
    except sa.exc.IntegrityError:
        pass  # another process stored it first
    stored = get(db, name)
    assert stored is not None
    return stored
