"""upload sessions keep their hash state, storage state and a lease

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hash_state", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("storage_state", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("lease_token", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_token")
        batch_op.drop_column("storage_state")
        batch_op.drop_column("hash_state")
