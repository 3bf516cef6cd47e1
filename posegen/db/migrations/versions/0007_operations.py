"""operations: background-change outcomes and the alerts' states

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "background_change_outcomes",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("pose_id", sa.Uuid(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(
        "ix_background_change_outcomes_finished_at",
        "background_change_outcomes",
        ["finished_at"],
    )
    op.create_table(
        "ops_alert_states",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("ops_alert_states")
    op.drop_index(
        "ix_background_change_outcomes_finished_at", table_name="background_change_outcomes"
    )
    op.drop_table("background_change_outcomes")
