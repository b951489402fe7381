"""Polytomous items (issue 18): options carry a score, responses the score awarded, calibrations
the category thresholds of a GRM/GPCM item.

``question_options.score`` is the credit an option earns (0 .. m-1); existing options get
``1`` when correct, else ``0``. ``user_responses.score`` is the category response the estimator
took; existing responses get ``1`` / ``0`` from ``is_correct``, which keeps its meaning (full
credit). ``item_calibration.thresholds`` is the JSON list ``[b1, .., b{m-1}]`` of a GRM/GPCM
calibration and null for a dichotomous one. Down drops the three columns (scores beyond full
credit are then lost; ``is_correct`` still says which options and answers earned full credit).

Revision ID: 0018_polytomous
Revises: 0014_bundle_revisions
Create Date: 2026-12-04 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_polytomous"
down_revision = "0014_bundle_revisions"
branch_labels = None
depends_on = None


def _legacy_rename(on: bool) -> None:
    """SQLite: a batch recreate renames its copy onto the table, which the analytics views read
    (see 0002); the legacy rename leaves the views alone instead of failing on them."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text(f"PRAGMA legacy_alter_table={'ON' if on else 'OFF'}"))


def upgrade() -> None:
    _legacy_rename(True)
    for table in ("question_options", "user_responses"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("score", sa.Integer(), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET score = CASE WHEN is_correct THEN 1 ELSE 0 END"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("score", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("item_calibration", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thresholds", sa.JSON(), nullable=True))
    _legacy_rename(False)


def downgrade() -> None:
    _legacy_rename(True)
    with op.batch_alter_table("item_calibration", schema=None) as batch_op:
        batch_op.drop_column("thresholds")
    for table in ("user_responses", "question_options"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("score")
    _legacy_rename(False)
