"""The index's shared MetaData and column types (schema.py and its parts use them)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Names sort byte-wise ("ASCIIbetical") on every database, as the spec allows.
Name = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")
Digest = sa.String(160)
