"""Migration 0006 on SQLite and PostgreSQL: free-text `generations.project_id` values (what the
demo wrote before projects existed) become projects of that name, owned by the same user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from posegen.db.migrate import upgrade
from posegen.db.models import Generation, Project
from posegen.db.session import session_scope
from tests.conftest import fresh_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_at_0005(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0005")
        yield url
        return
    with fresh_pg_database("posegen_mig") as url:
        from alembic import command

        from posegen.db.migrate import alembic_config

        command.downgrade(alembic_config(url), "0005")
        yield url


def test_text_project_ids_become_projects(db_at_0005: str) -> None:
    user_id, gen_a, gen_b, gen_c = (uuid.uuid4() for _ in range(4))
    engine = create_engine(db_at_0005)
    hexed = (lambda u: u.hex) if db_at_0005.startswith("sqlite") else str
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, role, credits, enterprise_unlimited, created_at)"
                " VALUES (:id, 'old@example.com', 'USER', 0, false, :now)"
            ),
            {"id": hexed(user_id), "now": now},
        )
        for gen, project in ((gen_a, "posegen-demo"), (gen_b, "posegen-demo"), (gen_c, None)):
            conn.execute(
                text(
                    "INSERT INTO generations (id, user_id, project_id, status, created_at)"
                    " VALUES (:id, :user, :project, 'completed', :now)"
                ),
                {"id": hexed(gen), "user": hexed(user_id), "project": project, "now": now},
            )
    engine.dispose()

    upgrade(db_at_0005)

    with session_scope(db_at_0005) as session:
        [project] = session.scalars(select(Project)).all()
        assert (project.user_id, project.name) == (user_id, "posegen-demo")
        placed = {g.id: g.project_id for g in session.scalars(select(Generation))}
        assert placed == {gen_a: project.id, gen_b: project.id, gen_c: None}
