"""Projects: a seller's named folders of generations — create, list, read, rename, delete.

A project is visible to its owner only (anyone else's id is a 404 like a missing one), and one
that still holds generations cannot be deleted (409): deleting it would orphan work.
"""

from __future__ import annotations

import uuid

from pydantic import field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from posegen.db.models import Generation, Project, utcnow
from posegen.domain.bodies import CamelBody
from posegen.domain.pose_library import clean_text
from posegen.errors import Conflict, NotFound

NOT_FOUND = "Project not found"
NAME_MAX = 100
DESCRIPTION_MAX = 500


def _clean_name(value: str) -> str:
    name = clean_text(value, NAME_MAX, required=True)
    assert name is not None
    return name


class ProjectCreate(CamelBody):
    """Body of POST /projects."""

    name: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _clean_name(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return clean_text(value, DESCRIPTION_MAX)


class ProjectUpdate(CamelBody):
    """Body of PATCH /projects/{id}: only the fields sent change; `description: null` clears."""

    name: str | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("must not be null (leave it out to keep the name)")
        return _clean_name(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return clean_text(value, DESCRIPTION_MAX)


class GenerationPlacement(CamelBody):
    """Optional body of POST /generations: the project the new generation belongs to."""

    project_id: uuid.UUID | None = None


def create_project(session: Session, user_id: uuid.UUID, body: ProjectCreate) -> Project:
    project = Project(
        id=uuid.uuid4(), user_id=user_id, name=body.name, description=body.description
    )
    session.add(project)
    session.commit()
    session.refresh(project)
    return project


def get_owned_project(session: Session, user_id: uuid.UUID, project_id: uuid.UUID) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.user_id != user_id:
        raise NotFound(NOT_FOUND)
    return project


def project_named(session: Session, user_id: uuid.UUID, name: str) -> Project:
    """The user's project with this name, created if there is none (`posegen import --project`)."""
    found = session.scalar(
        select(Project)
        .where(Project.user_id == user_id, Project.name == name)
        .order_by(Project.created_at)
        .limit(1)
    )
    return found or create_project(session, user_id, ProjectCreate(name=name))


def list_projects(
    session: Session, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[list[tuple[Project, int]], int]:
    """The user's projects, newest first, each with its number of generations."""
    total = session.scalar(select(func.count()).where(Project.user_id == user_id)) or 0
    counts = (
        select(Generation.project_id, func.count().label("n"))
        .group_by(Generation.project_id)
        .subquery()
    )
    rows = session.execute(
        select(Project, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.project_id == Project.id)
        .where(Project.user_id == user_id)
        .order_by(Project.created_at.desc(), Project.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [(project, int(count)) for project, count in rows], int(total)


def update_project(
    session: Session, user_id: uuid.UUID, project_id: uuid.UUID, body: ProjectUpdate
) -> Project:
    project = get_owned_project(session, user_id, project_id)
    if "name" in body.model_fields_set and body.name is not None:
        project.name = body.name
    if "description" in body.model_fields_set:
        project.description = body.description
    project.updated_at = utcnow()
    session.commit()
    session.refresh(project)
    return project


def delete_project(session: Session, user_id: uuid.UUID, project_id: uuid.UUID) -> None:
    project = get_owned_project(session, user_id, project_id)
    count = generation_count(session, project.id)
    if count:
        raise Conflict(
            f"This project still has {count} generation(s); move or delete them first.",
            generationCount=count,
        )
    session.delete(project)
    session.commit()


def generation_count(session: Session, project_id: uuid.UUID) -> int:
    return session.scalar(select(func.count()).where(Generation.project_id == project_id)) or 0
