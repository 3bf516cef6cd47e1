"""Poses: read one, and start a background change (charge, submit a flow run, answer 202)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header
from starlette.concurrency import run_in_threadpool

from posegen.api import schemas
from posegen.api.deps import CurrentUser, SessionDep, StorageDep, parse_id
from posegen.api.flow_runs import submit_background_change
from posegen.api.metrics import count_credits_charged, count_credits_refunded
from posegen.api.rate_limit import RESPONSES as RATE_LIMITED
from posegen.api.rate_limit import Bucket, per_user
from posegen.config import get_settings
from posegen.db.models import User
from posegen.db.session import session_scope
from posegen.domain.background import (
    BackgroundChange,
    BackgroundMode,
    ChangeTicket,
    abort_change,
    record_flow_run,
    start_change,
)
from posegen.domain.poses import get_owned_pose
from posegen.errors import ServiceUnavailable
from posegen.remote import check_url

router = APIRouter(tags=["poses"])

_NOT_FOUND = "Pose not found"
_METRIC_REASON = "background-change"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body, refused image URL or key"},
    401: {"description": "Missing or invalid bearer token"},
    403: {"description": "Insufficient credits (`required`, `balance`)"},
    404: {"description": "Pose not found (or not yours)"},
    409: {"description": "A background change for this pose is already running"},
    **RATE_LIMITED,
    503: {"description": "AI generation not configured, or runs cannot be started (refunded)"},
}


@router.get("/poses/{pose_id}", response_model=schemas.PoseOut)
def read_pose(
    pose_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> schemas.PoseOut:
    pose = get_owned_pose(session, user.id, parse_id(pose_id, _NOT_FOUND))
    return schemas.PoseOut.of(pose, storage)


@router.post(
    "/poses/{pose_id}/background",
    status_code=202,
    response_model=schemas.BackgroundChangeAccepted,
    responses=_ERRORS,
    dependencies=[per_user(Bucket.BACKGROUND)],
)
async def change_background(
    pose_id: str,
    change: BackgroundChange,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    after_response: BackgroundTasks,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> schemas.BackgroundChangeAccepted:
    """Accept a background change: the flow run does the work and refunds if it fails.

    Checks that cost nothing come first, so a refused request never touches credits. The
    database work is synchronous and runs in the threadpool; only the submission is awaited.
    Tying the charge to its run is done once the 202 is sent: the run's own first task records
    the same id, and the reconciler only needs it for a run that never starts.
    """
    pose_uuid = parse_id(pose_id, _NOT_FOUND)
    if change.background_mode == BackgroundMode.AI_GENERATE and not get_settings().flux_configured:
        raise ServiceUnavailable("AI background generation is not configured on this server")
    image_url = change.background_image_url
    if image_url and image_url.startswith("https://"):
        await run_in_threadpool(check_url, image_url)
    request_id = _request_id(user, pose_uuid, idempotency_key)
    ticket = await run_in_threadpool(start_change, session, user, pose_uuid, request_id, change)
    if ticket.newly_charged:
        count_credits_charged(ticket.credit_charged, _METRIC_REASON)
    try:
        flow_run_id = await submit_background_change(ticket, change)
    except ServiceUnavailable:
        refund = await run_in_threadpool(abort_change, session, ticket)
        if refund is not None and refund.created:
            count_credits_refunded(refund.amount, _METRIC_REASON)
        raise
    after_response.add_task(_record_flow_run, ticket, flow_run_id)
    return schemas.BackgroundChangeAccepted.of(ticket, flow_run_id, storage)


def _record_flow_run(ticket: ChangeTicket, flow_run_id: uuid.UUID) -> None:
    # Its own session: the request's is closed by the time a background task runs.
    with session_scope() as session:
        record_flow_run(session, ticket, flow_run_id)


def _request_id(user: User, pose_id: uuid.UUID, idempotency_key: str | None) -> uuid.UUID:
    """A client retry (same Idempotency-Key) maps to the same request: same run, one charge.

    Scoped by user and pose: two users picking the same key, or one client reusing a key for
    another pose, must not share a request (the second pose would get the first pose's run).
    """
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{user.id}:{pose_id}:{idempotency_key}")
