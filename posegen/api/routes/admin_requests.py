"""The admin queue of pose requests: review, move through the lifecycle, notes, delete, stats.

Every route takes `AdminUser`, so anyone else gets 403 before anything is read. Routes and
bodies are named as the seed's API names them (`mark-in-progress`, `mark-completed
{completedPoseId}`, `PUT notes`, `popular`); posegen adds history, delete and stats history.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from posegen.api import community_schemas as schemas
from posegen.api.deps import AdminUser, SessionDep, parse_id
from posegen.api.pagination import Page, Paginated, paginated
from posegen.db.community import OPEN_STATUSES, RequestStatus
from posegen.db.models import User
from posegen.domain import pose_requests as domain
from posegen.domain import request_stats
from posegen.domain.pose_requests import AdminAction, CompleteAction, NotesUpdate, RequestSort

router = APIRouter(prefix="/admin/pose-requests", tags=["admin: pose requests"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body (field named in `field`)"},
    401: {"description": "Missing or invalid bearer token"},
    403: {"description": "Not an administrator"},
    404: {"description": "Pose request not found"},
    409: {"description": "Illegal transition; the message names the current status"},
}


@router.get("", response_model=Paginated[schemas.AdminPoseRequestOut])
def list_requests(
    admin: AdminUser,
    session: SessionDep,
    page: Page,
    status: RequestStatus | None = None,
    category_id: Annotated[uuid.UUID | None, Query(alias="categoryId")] = None,
    user_id: Annotated[uuid.UUID | None, Query(alias="userId")] = None,
    search: Annotated[str | None, Query(max_length=100)] = None,
    sort: RequestSort = RequestSort.NEWEST,
) -> Paginated[schemas.AdminPoseRequestOut]:
    items, total = domain.list_all_requests(
        session,
        status=status,
        category_id=category_id,
        user_id=user_id,
        search=search,
        sort=sort,
        offset=page.offset,
        limit=page.limit,
    )
    return paginated(schemas.admin_pose_requests(session, admin, items), page, total)


@router.get("/stats", responses=_ERRORS)
def live_stats(admin: AdminUser, session: SessionDep) -> dict[str, Any]:
    """Counts straight from the database, as of now (the hourly flow keeps the history):
    `{total, pending, approved, inProgress, completed, rejected}` as the seed reads them, then
    by category, top voted and ratios."""
    return request_stats.live_stats(session)


@router.get("/popular", response_model=schemas.AdminPoseRequestList, responses=_ERRORS)
def popular(
    admin: AdminUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> schemas.AdminPoseRequestList:
    """What sellers want most: requests still open (pending, approved, in progress), by votes."""
    items = domain.popular_requests(session, limit, statuses=OPEN_STATUSES)
    return schemas.AdminPoseRequestList(items=schemas.admin_pose_requests(session, admin, items))


@router.get("/stats/history", response_model=Paginated[schemas.StatsSnapshot])
def stats_history(
    admin: AdminUser,
    session: SessionDep,
    page: Page,
    days: Annotated[int, Query(ge=1, le=365)] = 7,
) -> Paginated[schemas.StatsSnapshot]:
    """Snapshots stored by the `pose-request-stats` flow in the last `days`, newest first."""
    items, total = request_stats.list_snapshots(
        session, days=days, offset=page.offset, limit=page.limit
    )
    return paginated([schemas.StatsSnapshot.of(s) for s in items], page, total)


@router.get("/{request_id}", response_model=schemas.AdminPoseRequestDetailOut, responses=_ERRORS)
def read_request(
    request_id: str, admin: AdminUser, session: SessionDep
) -> schemas.AdminPoseRequestDetailOut:
    request = domain.get_request(session, parse_id(request_id, domain.NOT_FOUND))
    changes = domain.history(session, request.id)
    return schemas.admin_pose_request_detail(session, admin, request, changes)


@router.post(
    "/{request_id}/approve", response_model=schemas.AdminPoseRequestDetailOut, responses=_ERRORS
)
def approve(
    request_id: str, admin: AdminUser, session: SessionDep, body: AdminAction | None = None
) -> schemas.AdminPoseRequestDetailOut:
    return _move(session, admin, request_id, RequestStatus.APPROVED, body or AdminAction())


@router.post(
    "/{request_id}/reject", response_model=schemas.AdminPoseRequestDetailOut, responses=_ERRORS
)
def reject(
    request_id: str, admin: AdminUser, session: SessionDep, body: AdminAction | None = None
) -> schemas.AdminPoseRequestDetailOut:
    """`adminNotes` is required: the requester is told why."""
    return _move(session, admin, request_id, RequestStatus.REJECTED, body or AdminAction())


@router.post(
    "/{request_id}/mark-in-progress",
    response_model=schemas.AdminPoseRequestDetailOut,
    responses=_ERRORS,
)
def mark_in_progress(
    request_id: str, admin: AdminUser, session: SessionDep, body: AdminAction | None = None
) -> schemas.AdminPoseRequestDetailOut:
    return _move(session, admin, request_id, RequestStatus.IN_PROGRESS, body or AdminAction())


@router.post(
    "/{request_id}/mark-completed",
    response_model=schemas.AdminPoseRequestDetailOut,
    responses=_ERRORS,
)
def mark_completed(
    request_id: str, admin: AdminUser, session: SessionDep, body: CompleteAction | None = None
) -> schemas.AdminPoseRequestDetailOut:
    """`completedPoseId` is required and must name an existing pose library item."""
    return _move(session, admin, request_id, RequestStatus.COMPLETED, body or CompleteAction())


@router.put(
    "/{request_id}/notes", response_model=schemas.AdminPoseRequestDetailOut, responses=_ERRORS
)
def update_notes(
    request_id: str, body: NotesUpdate, admin: AdminUser, session: SessionDep
) -> schemas.AdminPoseRequestDetailOut:
    """Replace the admin notes (null or blank clears them); the status does not change."""
    request_uuid = parse_id(request_id, domain.NOT_FOUND)
    request = domain.update_admin_notes(session, request_uuid, body)
    return schemas.admin_pose_request_detail(
        session, admin, request, domain.history(session, request.id)
    )


@router.delete("/{request_id}", status_code=204, responses=_ERRORS)
def delete_request(request_id: str, admin: AdminUser, session: SessionDep) -> Response:
    domain.delete_request(session, parse_id(request_id, domain.NOT_FOUND))
    return Response(status_code=204)


def _move(
    session: Session, admin: User, request_id: str, target: RequestStatus, body: AdminAction
) -> schemas.AdminPoseRequestDetailOut:
    """Change the status, tell the requester (best effort), answer with the updated request."""
    change = domain.change_status(
        session, admin, parse_id(request_id, domain.NOT_FOUND), target, body
    )
    domain.announce_status_change(change)
    request = domain.get_request(session, change.request_id)
    session.refresh(request)
    return schemas.admin_pose_request_detail(
        session, admin, request, domain.history(session, request.id)
    )
