"""K stored once (issue 14): bundle revisions carry their parent and reason, bundle facts carry
the last validation run; the per-item and per-stratum copies of K and the pinned K sets go.

``item_exposure_control``, ``item_exposure_strata`` and ``exposure_k_sets`` only mirrored
bundles (or held manual overrides, which are now unvalidated bundle revisions). Rows they still
hold are written to the audit log (``exposure.k_rows_dropped``, per tenant) before the tables
are dropped, so no value is lost unseen; an admin re-creates what should stay as a revision.

Revision ID: 0014_bundle_revisions
Revises: 0017_outbox_relay
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0014_bundle_revisions"
down_revision = "0017_outbox_relay"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _record_dropped_rows() -> None:
    connection = op.get_bind()
    per_tenant: dict = {}
    for tenant, qid, version, sh_p in connection.execute(
        sa.text(
            "SELECT tenant_id, question_id, version, sh_p FROM item_exposure_control ORDER BY question_id"
        )
    ):
        per_tenant.setdefault(tenant, {"item_exposure_control": [], "item_exposure_strata": []})[
            "item_exposure_control"
        ].append([int(qid), int(version), float(sh_p)])
    for tenant, qid, version, stratum, sh_p in connection.execute(
        sa.text(
            "SELECT tenant_id, question_id, version, stratum, sh_p FROM item_exposure_strata "
            "ORDER BY question_id, stratum"
        )
    ):
        per_tenant.setdefault(tenant, {"item_exposure_control": [], "item_exposure_strata": []})[
            "item_exposure_strata"
        ].append([int(qid), int(version), int(stratum), float(sh_p)])
    audit = sa.table(
        "audit_log",
        sa.column("tenant_id", sa.String),
        sa.column("actor", sa.String),
        sa.column("action", sa.String),
        sa.column("entity_type", sa.String),
        sa.column("entity_id", sa.String),
        sa.column("details", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    rows = [
        {
            "tenant_id": tenant,
            "actor": "migration 0014",
            "action": "exposure.k_rows_dropped",
            "entity_type": "tenant",
            "entity_id": tenant,
            "details": details,
            "created_at": datetime.now(UTC),
        }
        for tenant, details in per_tenant.items()
    ]
    if rows:
        op.bulk_insert(audit, rows)


def upgrade() -> None:
    _record_dropped_rows()
    op.drop_table("exposure_k_sets")
    with op.batch_alter_table("item_exposure_strata", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_strata_tenant")
    op.drop_table("item_exposure_strata")
    op.drop_table("item_exposure_control")
    with op.batch_alter_table("exposure_bundles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.create_foreign_key("fk_exposure_bundles_parent", "exposure_bundles", ["parent_id"], ["id"])
    with op.batch_alter_table("exposure_bundle_info", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validation_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("validation_progress", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("validation_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exposure_bundle_info", schema=None) as batch_op:
        batch_op.drop_column("validation_message")
        batch_op.drop_column("validation_progress")
        batch_op.drop_column("validation_state")
    with op.batch_alter_table("exposure_bundles", schema=None) as batch_op:
        batch_op.drop_constraint("fk_exposure_bundles_parent", type_="foreignkey")
        batch_op.drop_column("reason")
        batch_op.drop_column("parent_id")
    op.create_table(
        "item_exposure_control",
        sa.Column("question_id", _BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("sh_p", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["question_id"], ["questions.id"]),
        sa.PrimaryKeyConstraint("question_id", "version"),
    )
    op.create_table(
        "item_exposure_strata",
        sa.Column("question_id", _BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("theta_low", sa.Float(), nullable=True),
        sa.Column("theta_high", sa.Float(), nullable=True),
        sa.Column("sh_p", sa.Float(), nullable=False),
        sa.Column("bundle_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["exposure_bundles.id"]),
        sa.ForeignKeyConstraint(["question_id"], ["questions.id"]),
        sa.PrimaryKeyConstraint("question_id", "version", "stratum"),
    )
    with op.batch_alter_table("item_exposure_strata", schema=None) as batch_op:
        batch_op.create_index("ix_exposure_strata_tenant", ["tenant_id"], unique=False)
    op.create_table(
        "exposure_k_sets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("theta_cuts", sa.JSON(), nullable=False),
        sa.Column("sh_p", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
