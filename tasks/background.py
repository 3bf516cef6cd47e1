"""Tasks of the background-change flow; each wraps one posegen call and passes keys, not bytes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from prefect import task
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import rate_limit
from prefect.runtime import flow_run
from prefect.states import State
from prefect.tasks import Task, exponential_backoff
from sqlalchemy.exc import DBAPIError

from posegen.config import get_settings
from posegen.db.session import session_scope
from posegen.domain import background as domain
from posegen.domain.background import BackgroundChange, ChangeTicket, PoseImages
from posegen.domain.users import get_user
from posegen.errors import NotFound, is_retryable
from posegen.events import emit_background_change_completed
from posegen.imaging import pipeline
from posegen.imaging.backgrounds import source_for
from posegen.storage import get_storage

_BACKOFF = exponential_backoff(backoff_factor=get_settings().retry_backoff_seconds)


def retry_transient_only(task: Task, task_run: TaskRun, state: State) -> bool:  # type: ignore[type-arg]
    """Retry network trouble, timeouts, 429 and 5xx; validation and moderation fail at once.

    A database connection dropped under a task (server restart, failover, an idle connection
    killed by a proxy) is network trouble too: every task here is safe to run again (the charge
    is idempotent by request id, the rest only read or overwrite), and the pool hands the retry
    a fresh connection.
    """
    error = state.data
    if isinstance(error, DBAPIError):
        return error.connection_invalidated
    return is_retryable(error, unforeseen=False)


_RETRYING = {
    "retries": 2,  # 3 attempts in all
    "retry_delay_seconds": _BACKOFF(2),
    "retry_condition_fn": retry_transient_only,
}


def _charge(
    pose_id: uuid.UUID, user_id: uuid.UUID, request_id: uuid.UUID, change: BackgroundChange
) -> ChangeTicket:
    """Idempotent by request id: when the API already charged (it always does), this finds
    that charge; a run started some other way is charged here. Ties the charge to this run."""
    with session_scope() as session:
        user = get_user(session, user_id)
        if user is None:
            raise NotFound("User not found")
        ticket = domain.start_change(session, user, pose_id, request_id, change)
        run_id = flow_run.get_id()
        if run_id:
            domain.record_flow_run(session, ticket, uuid.UUID(run_id))
        return ticket


@dataclass(frozen=True)
class RenderedChange:
    """What `render_change` stored: the charge it found, the pose's keys and the three images
    the change wrote."""

    ticket: ChangeTicket
    images: PoseImages
    mask_key: str
    background_key: str
    output_key: str


# One task for the charge and the render steps (issue 16): each step is idempotent and reads
# what the one before stored, so one retry scope loses nothing (a retry finds the charge by
# request id, and after a FLUX error the mask stored, and segments nothing again), and each
# task run costs Prefect's orchestration once (a task engine, its state events and logs; ~20 ms
# a task on the seller's wait), which had been most of a warm change's time. The charge had a
# task of its own, first in the run, where a retry of its own re-ran nothing less.
@task(name="render-change", timeout_seconds=600, **_RETRYING)
def render_change(
    pose_id: uuid.UUID, user_id: uuid.UUID, request_id: uuid.UUID, change: BackgroundChange
) -> RenderedChange:
    """Find (or take) the charge → load the original → remove its background → build the new
    one → composite."""
    ticket = _charge(pose_id, user_id, request_id, change)
    storage = get_storage()
    with session_scope() as session:
        images = domain.pose_images(session, pose_id)
    storage.size(images.original_key)  # fail here, clearly, if the original is gone
    mask_key = pipeline.remove_background(storage, images)
    limits = list(source_for(change.background_mode).rate_limits)
    if limits:
        rate_limit(limits, strict=True)
    background_key = pipeline.build_background(storage, images, change)
    output_key = pipeline.composite_pose(storage, images, mask_key, background_key)
    return RenderedChange(ticket, images, mask_key, background_key, output_key)


# Its own task so that a failure here (the database, mostly) retries without rendering again:
# an AI background would be requested from FLUX a second time.
@task(name="update-pose", **_RETRYING)
def update_pose(change: BackgroundChange, rendered: RenderedChange) -> str:
    """Record the change on the pose, then tell the user at once; returns the new image's key.

    The completion event goes out the moment the pose points at the new image (a client that
    reads the pose on the event sees it), not after Prefect finishes the run; `emit_event` only
    queues it for Prefect's events worker, so nothing here waits for delivery.
    """
    ticket = rendered.ticket
    with session_scope() as session:
        domain.complete_change(
            session,
            rendered.images.pose_id,
            ticket.request_id,
            change,
            image_key=rendered.output_key,
            mask_key=rendered.mask_key,
            background_key=rendered.background_key,
        )
    emit_background_change_completed(
        pose_id=ticket.pose_id,
        user_id=ticket.user_id,
        generation_id=ticket.generation_id,
        request_id=ticket.request_id,
        image_url=get_storage().client_url(rendered.output_key),
        image_key=ticket.output_key,
        background_mode=change.background_mode.value,
        credit_charged=ticket.credit_charged,
    )
    return rendered.output_key
