"""Pose requests for users: submit, list own, read, withdraw, vote, and the public board."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from posegen.api import community_schemas as schemas
from posegen.api.deps import CurrentUser, SessionDep, parse_id
from posegen.api.pagination import Page, Paginated, paginated
from posegen.api.rate_limit import RESPONSES as RATE_LIMITED
from posegen.api.rate_limit import Bucket, per_user
from posegen.db.community import RequestStatus
from posegen.domain import pose_requests as domain
from posegen.domain.pose_requests import PoseRequestCreate, RequestSort

router = APIRouter(prefix="/requests", tags=["pose requests"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token"},
    404: {"description": "Pose request not found (or not visible to you)"},
    409: {"description": "Not allowed in the request's current status, or a duplicate"},
}


@router.post(
    "",
    status_code=201,
    response_model=schemas.CreatedPoseRequest,
    responses={**_ERRORS, **RATE_LIMITED},
    dependencies=[per_user(Bucket.REQUESTS)],
)
def create_request(
    body: PoseRequestCreate, user: CurrentUser, session: SessionDep
) -> schemas.CreatedPoseRequest:
    """409 "You already have a pending request for this pose" when you have an open one with
    the same name (case and spacing aside)."""
    request = domain.create_request(session, user, body)
    return schemas.CreatedPoseRequest(request=schemas.pose_requests(session, user, [request])[0])


@router.get("", response_model=Paginated[schemas.PoseRequestOut])
def list_own_requests(
    user: CurrentUser,
    session: SessionDep,
    page: Page,
    status: RequestStatus | None = None,
    search: Annotated[str | None, Query(max_length=100)] = None,
    sort: RequestSort = RequestSort.NEWEST,
) -> Paginated[schemas.PoseRequestOut]:
    items, total = domain.list_own_requests(
        session,
        user.id,
        status=status,
        search=search,
        sort=sort,
        offset=page.offset,
        limit=page.limit,
    )
    return paginated(schemas.pose_requests(session, user, items), page, total)


@router.get("/popular", response_model=schemas.PoseRequestList)
def popular_requests(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> schemas.PoseRequestList:
    """The community board: requests still taking votes, most voted first, with whether you
    voted (pending ones too, unless POSEGEN_POSE_REQUESTS_PREMODERATION is on)."""
    items = domain.popular_requests(session, limit)
    return schemas.PoseRequestList(items=schemas.pose_requests(session, user, items))


@router.get("/{request_id}", response_model=schemas.PoseRequestOut, responses=_ERRORS)
def read_request(request_id: str, user: CurrentUser, session: SessionDep) -> schemas.PoseRequestOut:
    request = domain.get_visible_request(session, user, parse_id(request_id, domain.NOT_FOUND))
    return schemas.pose_requests(session, user, [request])[0]


@router.delete("/{request_id}", status_code=204, responses=_ERRORS)
def delete_request(request_id: str, user: CurrentUser, session: SessionDep) -> Response:
    """Withdraw your own request while it is still pending."""
    domain.delete_own_request(session, user, parse_id(request_id, domain.NOT_FOUND))
    return Response(status_code=204)


@router.post("/{request_id}/vote", response_model=schemas.Vote, responses=_ERRORS)
def vote(request_id: str, user: CurrentUser, session: SessionDep) -> schemas.Vote:
    """Idempotent: voting twice counts once. 409 once the request is completed or rejected."""
    state = domain.vote(session, user, parse_id(request_id, domain.NOT_FOUND))
    return schemas.Vote.of(state)


@router.delete("/{request_id}/vote", response_model=schemas.Vote, responses=_ERRORS)
def unvote(request_id: str, user: CurrentUser, session: SessionDep) -> schemas.Vote:
    state = domain.unvote(session, user, parse_id(request_id, domain.NOT_FOUND))
    return schemas.Vote.of(state)
