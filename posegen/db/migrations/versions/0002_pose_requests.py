"""pose requests: library, categories, requests, votes, status history, stats snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 22:41:58.449082
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pose_categories",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "pose_request_stats_snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pose_request_stats_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pose_request_stats_snapshots_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "pose_library_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        sa.Column("image_key", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["pose_categories.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pose_library_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pose_library_items_category_id"), ["category_id"], unique=False
        )

    op.create_table(
        "pose_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("pose_name", sa.String(length=100), nullable=False),
        sa.Column("normalized_name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("reference_image_url", sa.String(length=2048), nullable=True),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        sa.Column("use_case", sa.String(length=200), nullable=True),
        sa.Column("votes_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("admin_notes", sa.Text(), nullable=True),
        sa.Column("completed_pose_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("votes_count >= 0", name="ck_pose_requests_votes_nonnegative"),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["pose_categories.id"],
        ),
        sa.ForeignKeyConstraint(
            ["completed_pose_id"],
            ["pose_library_items.id"],
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pose_requests", schema=None) as batch_op:
        batch_op.create_index("ix_pose_requests_status", ["status"], unique=False)
        batch_op.create_index("ix_pose_requests_user_status", ["user_id", "status"], unique=False)
        batch_op.create_index("ix_pose_requests_votes", ["votes_count"], unique=False)
        batch_op.create_index(
            "uq_pose_requests_open_name",
            ["user_id", "normalized_name"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'approved', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'approved', 'in_progress')"),
        )

    op.create_table(
        "pose_request_status_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("admin_id", sa.Uuid(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["admin_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["request_id"], ["pose_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pose_request_status_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pose_request_status_changes_request", ["request_id", "created_at"], unique=False
        )

    op.create_table(
        "pose_request_votes",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["pose_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", "user_id"),
    )
    with op.batch_alter_table("pose_request_votes", schema=None) as batch_op:
        batch_op.create_index("ix_pose_request_votes_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pose_request_votes", schema=None) as batch_op:
        batch_op.drop_index("ix_pose_request_votes_created")

    op.drop_table("pose_request_votes")
    with op.batch_alter_table("pose_request_status_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_pose_request_status_changes_request")

    op.drop_table("pose_request_status_changes")
    with op.batch_alter_table("pose_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_pose_requests_open_name",
            sqlite_where=sa.text("status IN ('pending', 'approved', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'approved', 'in_progress')"),
        )
        batch_op.drop_index("ix_pose_requests_votes")
        batch_op.drop_index("ix_pose_requests_user_status")
        batch_op.drop_index("ix_pose_requests_status")

    op.drop_table("pose_requests")
    with op.batch_alter_table("pose_library_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pose_library_items_category_id"))

    op.drop_table("pose_library_items")
    with op.batch_alter_table("pose_request_stats_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pose_request_stats_snapshots_created_at"))

    op.drop_table("pose_request_stats_snapshots")
    op.drop_table("pose_categories")
