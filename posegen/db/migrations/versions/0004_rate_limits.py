"""rate limits: per-user token buckets for the API's trigger endpoints; merges 0002 and 0003

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-11-28 10:00:00.000000

Also the merge point of the two branches off 0001 (pose requests, export settings), so the
schema has one head again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=32), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "bucket"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
