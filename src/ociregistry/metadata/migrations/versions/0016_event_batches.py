"""event batches: event_endpoints.batch_end, event_deliveries.last_event_id and .events

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-05 01:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The last event of the batch an endpoint is retrying (its membership, frozen so
    # that a retry sends the same events under the same webhook-id); null: none.
    op.add_column("event_endpoints", sa.Column("batch_end", sa.BigInteger(), nullable=True))
    # A delivery attempt covers the events event_id..last_event_id (events of them sent).
    op.add_column("event_deliveries", sa.Column("last_event_id", sa.BigInteger(), nullable=True))
    op.add_column("event_deliveries", sa.Column("events", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_deliveries") as batch:
        batch.drop_column("events")
        batch.drop_column("last_event_id")
    with op.batch_alter_table("event_endpoints") as batch:
        batch.drop_column("batch_end")
