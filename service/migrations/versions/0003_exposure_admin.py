"""Exposure administration: per-stratum parameters in force, pinned K sets, daily exposure
counters and bundle facts (see ``service/exposure_models.py``).

New tables only: nothing the analytics views read is altered.

Revision ID: 0003_exposure_admin
Revises: 0002_analytics
Create Date: 2026-11-24 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_exposure_admin"
down_revision = "0002_analytics"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
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
    op.create_table(
        "item_daily_exposures",
        sa.Column("question_id", _BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("administrations", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["question_id"], ["questions.id"]),
        sa.PrimaryKeyConstraint("question_id", "version", "day"),
    )
    op.create_table(
        "exposure_bundle_info",
        sa.Column("bundle_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("carries_calibration", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("predicted_rates", sa.JSON(), nullable=True),
        sa.Column("predicted_examinees", sa.Integer(), nullable=True),
        sa.Column("predicted_seed", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["bundle_id"], ["exposure_bundles.id"]),
        sa.PrimaryKeyConstraint("bundle_id"),
    )


def downgrade() -> None:
    op.drop_table("exposure_bundle_info")
    op.drop_table("item_daily_exposures")
    op.drop_table("exposure_k_sets")
    with op.batch_alter_table("item_exposure_strata", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_strata_tenant")
    op.drop_table("item_exposure_strata")
