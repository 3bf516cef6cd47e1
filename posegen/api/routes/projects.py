"""Projects (the seed's Phase 2): your folders of generations — list, create, read, edit, delete."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from posegen.api import schemas
from posegen.api.deps import CurrentUser, SessionDep, StorageDep, parse_id
from posegen.api.pagination import Page, Paginated, paginated
from posegen.db.models import Project
from posegen.domain import projects as domain
from posegen.domain.poses import list_generations
from posegen.domain.projects import ProjectCreate, ProjectUpdate
from posegen.storage import Storage

router = APIRouter(prefix="/projects", tags=["projects"])

_DETAIL_GENERATIONS = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Project not found (or not yours)"},
}


@router.get("", response_model=Paginated[schemas.ProjectOut])
def read_projects(
    user: CurrentUser, session: SessionDep, page: Page
) -> Paginated[schemas.ProjectOut]:
    """Your projects, newest first, each with its number of generations."""
    rows, total = domain.list_projects(session, user.id, offset=page.offset, limit=page.limit)
    return paginated([schemas.ProjectOut.of(p, count) for p, count in rows], page, total)


@router.post("", status_code=201, response_model=schemas.ProjectOut)
def create_project(
    body: ProjectCreate, user: CurrentUser, session: SessionDep
) -> schemas.ProjectOut:
    return schemas.ProjectOut.of(domain.create_project(session, user.id, body), 0)


@router.get("/{project_id}", response_model=schemas.ProjectDetailOut, responses=_ERRORS)
def read_project(
    project_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> schemas.ProjectDetailOut:
    """The project with its generations (newest first, the latest 1,000; `GET /generations`
    pages through all of yours)."""
    project = domain.get_owned_project(session, user.id, parse_id(project_id, domain.NOT_FOUND))
    return _detail(session, storage, user.id, project)


@router.patch("/{project_id}", response_model=schemas.ProjectDetailOut, responses=_ERRORS)
def update_project(
    project_id: str,
    body: ProjectUpdate,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> schemas.ProjectDetailOut:
    project_uuid = parse_id(project_id, domain.NOT_FOUND)
    project = domain.update_project(session, user.id, project_uuid, body)
    return _detail(session, storage, user.id, project)


@router.delete(
    "/{project_id}",
    status_code=204,
    responses={**_ERRORS, 409: {"description": "The project still has generations"}},
)
def delete_project(project_id: str, user: CurrentUser, session: SessionDep) -> Response:
    domain.delete_project(session, user.id, parse_id(project_id, domain.NOT_FOUND))
    return Response(status_code=204)


def _detail(
    session: Session, storage: Storage, user_id: uuid.UUID, project: Project
) -> schemas.ProjectDetailOut:
    generations, total = list_generations(
        session, user_id, offset=0, limit=_DETAIL_GENERATIONS, project_id=project.id
    )
    shaped = [schemas.GenerationSummary.of(g, storage) for g in generations]
    return schemas.ProjectDetailOut.of(project, shaped, total)
