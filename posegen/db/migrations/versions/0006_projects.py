"""projects: a seller's folders of generations; generations.project_id becomes a reference

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00.000000

Before this, `generations.project_id` was free text (only the demo set it). Each distinct
(owner, text) becomes a project of that name, so no generation loses its grouping.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_projects = sa.table(
    "projects",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_generations = sa.table(
    "generations",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("project_id", sa.String()),
    sa.column("project_ref", sa.Uuid()),
)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_projects_user_id", "projects", ["user_id"])
    op.add_column("generations", sa.Column("project_ref", sa.Uuid(), nullable=True))

    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(_generations.c.user_id, _generations.c.project_id)
        .where(_generations.c.project_id.is_not(None))
        .distinct()
    ).all()
    for user_id, text in rows:
        project_id = uuid.uuid4()
        bind.execute(
            _projects.insert().values(
                id=project_id, user_id=user_id, name=text[:100], created_at=now, updated_at=now
            )
        )
        bind.execute(
            _generations.update()
            .where(_generations.c.user_id == user_id, _generations.c.project_id == text)
            .values(project_ref=project_id)
        )

    # Two batches: SQLite's table copy cannot index a column renamed in the same batch.
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("project_id")
        batch.alter_column("project_ref", new_column_name="project_id")
    with op.batch_alter_table("generations") as batch:
        batch.create_foreign_key(
            "fk_generations_project_id", "projects", ["project_id"], ["id"], ondelete="RESTRICT"
        )
    op.create_index("ix_generations_project_id", "generations", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_generations_project_id", table_name="generations")
    with op.batch_alter_table("generations") as batch:
        batch.drop_constraint("fk_generations_project_id", type_="foreignkey")
        batch.drop_column("project_id")
        batch.add_column(sa.Column("project_id", sa.String(length=64), nullable=True))
    op.drop_index("ix_projects_user_id", table_name="projects")
    op.drop_table("projects")
