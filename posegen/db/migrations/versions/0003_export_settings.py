"""export settings: each user's default export formats (the nightly export renders these)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-27 22:43:49.661367

Branches off 0001 beside 0002 (pose requests); `posegen db upgrade` upgrades to every head.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_export_settings",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("user_export_settings")
