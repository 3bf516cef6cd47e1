"""Flow `background-change`: charge → load → remove background → build background → composite
→ save → update the pose → tell the user. Any failure after the charge refunds exactly once.

Two tasks (issue 16): `render-change` (charge → load → composite, one retry scope, inside the
`posegen-background-change` slot) and `update-pose` (which sends the completion event as soon
as the pose points at the image). `update-pose` starts the moment the render ends, while the
slot is being given back, so the user's wait holds no release; in a warm process the run does
not wait for the release either (`posegen/runtime/warm_child.py` settles it after the run).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.concurrency.asyncio import concurrency
from prefect.flows import Flow
from prefect.states import State

from posegen.config import get_settings
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange, fail_change
from posegen.errors import PosegenError
from posegen.events import emit_background_change_failed
from posegen.orchestration import BACKGROUND_CHANGE_LIMIT, ensure_limits
from tasks.background import render_change, update_pose

# A run killed inside its slot (SIGKILL, a lost machine) cannot release it; the lease lapses
# instead (`background_change_slot_lease_seconds`, 120 s). With Prefect's default of 300 s,
# three killed runs stopped every change for five minutes. A live run renews its lease every
# 3/4 of it, so 120 s still leaves 30 s for a slow Prefect API before a renewal is late
# (strict: the run would then stop, and be refunded).

GENERIC_FAILURE = "The background change failed on our side; your credits were refunded."


def failure_message(state: State[Any]) -> str:
    """What the user is told: our own errors carry a safe message; anything else is generic."""
    # A failed flow's data is the exception, or a result record wrapping it when results persist.
    error = getattr(state.data, "result", state.data)
    if isinstance(error, PosegenError):
        return f"{error.message} Your credits were refunded."
    if state.is_cancelled() or state.is_cancelling():
        return "The background change was cancelled; your credits were refunded."
    return GENERIC_FAILURE


def refund_failed_change(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Failure, crash and cancellation hook: refund once, record the error, emit the event.

    The refund is unique per charge in the ledger, so this hook, a re-run and the reconciler
    can all try and the user is still refunded exactly once.
    """
    params = flow_run.parameters
    pose_id, user_id = uuid.UUID(str(params["pose_id"])), uuid.UUID(str(params["user_id"]))
    request_id = uuid.UUID(str(params["request_id"]))
    message = failure_message(state)
    with session_scope() as session:
        refund = fail_change(session, pose_id, request_id, message, flow_run_id=flow_run.id)
    emit_background_change_failed(
        pose_id=pose_id,
        user_id=user_id,
        request_id=request_id,
        error_message=message,
        credit_refunded=refund.amount if refund else 0,
        state=state.type.value,
        reconciled=False,
        flow_run_id=flow_run.id,
    )


@asynccontextmanager
async def _render_slot() -> AsyncIterator[None]:
    """One of `posegen-background-change`'s slots, strict and leased, for the render.

    A slot that cannot be given back once the body is done does not fail the run: the user may
    already have been told the change is done (and a failed run refunds). Its lease lapses
    instead, as a killed run's does; the warning says so in the run's logs (in a warm process,
    which gives the slot back after the run, in the process's log).
    """
    lease_seconds = get_settings().background_change_slot_lease_seconds
    body_done = False
    try:
        async with concurrency(
            BACKGROUND_CHANGE_LIMIT, occupy=1, strict=True, lease_duration=lease_seconds
        ):
            yield
            body_done = True
    except Exception:
        if not body_done:
            raise
        get_run_logger().warning(
            "Could not give back the %s slot; it frees itself within %d s.",
            BACKGROUND_CHANGE_LIMIT,
            lease_seconds,
            exc_info=True,
        )


@flow(
    name="background-change",
    on_failure=[refund_failed_change],
    on_crashed=[refund_failed_change],
    on_cancellation=[refund_failed_change],
    log_prints=True,
    # Nothing reads a change's return value back from Prefect; not persisting it also spares
    # each run the engine's question to the server about its default result storage.
    persist_result=False,
)
async def background_change(
    pose_id: uuid.UUID, user_id: uuid.UUID, request_id: uuid.UUID, change: BackgroundChange
) -> str:
    """Change one pose's background; returns the new image's storage key."""
    await ensure_limits()
    async with _render_slot():
        rendered = render_change(pose_id, user_id, request_id, change)
        # Submitted (a thread of the flow's task runner) as the render ends, so the pose is
        # updated and the user told while the slot is given back, not after.
        updating = update_pose.submit(change, rendered)
    # Waited for off the loop, so a release still on its way goes on meanwhile.
    await asyncio.to_thread(updating.wait)
    return updating.result()
