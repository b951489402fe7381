"""Outbox relay: the lease that keeps a single relay on SQLite, and an index for the relay's
per-quiz order check (see ``service/relay``).

Revision ID: 0017_outbox_relay
Revises: 0015_sign_in_security
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_outbox_relay"
down_revision = "0015_sign_in_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_relay_lease",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_aggregate", ["aggregate_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_aggregate")
    op.drop_table("outbox_relay_lease")
