"""Generations: the owner's list, one generation with its poses, and a new one built from
uploaded photos (the web version of `posegen import`: create it, then add photos one by one)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from posegen.api import schemas
from posegen.api.deps import CurrentUser, SessionDep, StorageDep, parse_id
from posegen.api.pagination import Page, Paginated, paginated
from posegen.api.rate_limit import RESPONSES as RATE_LIMITED
from posegen.api.rate_limit import Bucket, per_user
from posegen.api.routes.uploads import UPLOAD_BODY, read_image_field
from posegen.domain.poses import (
    add_pose,
    create_generation,
    get_owned_generation,
    list_generations,
)
from posegen.domain.projects import GenerationPlacement, get_owned_project

router = APIRouter(tags=["generations"])

_NOT_FOUND = "Generation not found"


@router.get("/generations", response_model=Paginated[schemas.GenerationSummary])
def read_generations(
    user: CurrentUser, session: SessionDep, storage: StorageDep, page: Page
) -> Paginated[schemas.GenerationSummary]:
    """Your generations, newest first, each with its pose count and a cover image."""
    items, total = list_generations(session, user.id, offset=page.offset, limit=page.limit)
    return paginated([schemas.GenerationSummary.of(item, storage) for item in items], page, total)


@router.post(
    "/generations",
    status_code=201,
    response_model=schemas.GenerationOut,
    responses={404: {"description": "Project not found (or not yours)"}},
)
def new_generation(
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    body: GenerationPlacement | None = None,
) -> schemas.GenerationOut:
    """An empty generation, in the project `{projectId}` if given; add its photos with
    `POST /generations/{id}/poses`."""
    project_id = body.project_id if body is not None else None
    if project_id is not None:
        get_owned_project(session, user.id, project_id)
    generation = create_generation(session, user.id, project_id=project_id)
    return schemas.GenerationOut.of(generation, storage)


@router.get("/generations/{generation_id}", response_model=schemas.GenerationOut)
def read_generation(
    generation_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> schemas.GenerationOut:
    generation = get_owned_generation(session, user.id, parse_id(generation_id, _NOT_FOUND))
    return schemas.GenerationOut.of(generation, storage)


@router.post(
    "/generations/{generation_id}/poses",
    status_code=201,
    response_model=schemas.PoseOut,
    openapi_extra=UPLOAD_BODY,
    responses={
        400: {"description": "Not an image we accept, too large, or animated"},
        404: {"description": "Generation not found (or not yours)"},
        **RATE_LIMITED,
    },
    dependencies=[per_user(Bucket.UPLOADS)],
)
async def add_generation_pose(
    generation_id: str,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> schemas.PoseOut:
    """Add one photo (multipart field `file`, the same checks and limits as `POST /uploads`).

    One request per photo, so a browser can show each file's progress and a refused file
    leaves the others in place. Ownership is checked before the body is read.
    """
    generation_uuid = parse_id(generation_id, _NOT_FOUND)
    generation = await run_in_threadpool(get_owned_generation, session, user.id, generation_uuid)
    data = await read_image_field(request)
    pose = await run_in_threadpool(add_pose, session, storage, generation, data)
    return schemas.PoseOut.of(pose, storage)
