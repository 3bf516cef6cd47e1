"""Tasks of the refund reconciler: list open charges, ask Prefect how their runs ended, refund."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.states import Crashed
from sqlalchemy import select

from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain.background import fail_change
from posegen.domain.credits import refund_charge
from posegen.domain.reconcile import STALLED, OpenCharge, open_charges, refund_reason
from posegen.events import emit_background_change_failed
from posegen.imaging.exporting import discard_staged
from posegen.storage import get_storage


@task(name="find-open-charges", retries=2, retry_delay_seconds=2)
def find_open_charges(lookback_hours: float) -> list[OpenCharge]:
    now = datetime.now(UTC)
    with session_scope() as session:
        return open_charges(session, since=now - timedelta(hours=lookback_hours), until=now)


@task(name="read-run-states", retries=2, retry_delay_seconds=2)
async def read_run_states(run_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """State type of each run that still exists (one API call per 200 runs)."""
    states: dict[uuid.UUID, str] = {}
    async with get_client() as client:
        for start in range(0, len(run_ids), 200):
            batch = run_ids[start : start + 200]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)), limit=len(batch)
            )
            for run in runs:
                states[run.id] = run.state_type.value if run.state_type else "UNKNOWN"
    return states


def mark_crashed(run_id: uuid.UUID) -> None:
    """Tell Prefect the truth about a run whose process died, so the UI shows it Crashed."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            run_id,
            Crashed(message="The run stopped responding; posegen refunded its charge."),
            force=True,
        )


@task(name="refund-dead-charges")
def refund_dead_charges(
    charges: list[OpenCharge],
    states: dict[uuid.UUID, str],
    grace_minutes: float,
    running_timeout_minutes: float,
) -> list[dict[str, str | int]]:
    """Refund (once, by the ledger's rule) every charge whose run can no longer refund it."""
    now = datetime.now(UTC)
    refunded: list[dict[str, str | int]] = []
    discarded: set[uuid.UUID] = set()  # dead paid exports whose staged files are gone
    for charge in charges:
        run_id = charge.flow_run_id
        reason = refund_reason(
            charge,
            states.get(run_id) if run_id else None,
            run_id in states if run_id else False,
            now=now,
            grace=timedelta(minutes=grace_minutes),
            running_timeout=timedelta(minutes=running_timeout_minutes),
        )
        if reason is None:
            continue
        if reason == STALLED and run_id is not None:
            mark_crashed(run_id)
        if charge.kind == "export":
            with session_scope() as session:
                entry = refund_charge(session, charge.charge_key, flow_run_id=run_id)
                generation_id = session.scalar(
                    select(Pose.generation_id).where(Pose.id == charge.pose_id)
                )
            # A paid run that died (SIGKILL, a lost machine) ran no hook to delete what it had
            # staged; its files would sit on storage forever, never published nor listed. One
            # listing per run, not per charged file.
            if generation_id is not None and charge.request_id not in discarded:
                discard_staged(get_storage(), generation_id, charge.request_id)
                discarded.add(charge.request_id)
            if entry is not None and entry.created:
                refunded.append(
                    {
                        "poseId": str(charge.pose_id),
                        "userId": str(charge.user_id),
                        "flowRunId": str(run_id or ""),
                        "credits": entry.amount,
                        "reason": f"export file: {reason}",
                    }
                )
            continue
        message = (
            "The background change did not finish (the worker stopped); your credits were refunded."
        )
        with session_scope() as session:
            refund = fail_change(
                session, charge.pose_id, charge.request_id, message, flow_run_id=run_id
            )
        if refund is None or not refund.created:
            continue
        emit_background_change_failed(
            pose_id=charge.pose_id,
            user_id=charge.user_id,
            request_id=charge.request_id,
            error_message=message,
            credit_refunded=refund.amount,
            state=states.get(run_id) if run_id else None,
            reconciled=True,
            flow_run_id=run_id,
        )
        refunded.append(
            {
                "poseId": str(charge.pose_id),
                "userId": str(charge.user_id),
                "flowRunId": str(run_id or ""),
                "credits": refund.amount,
                "reason": reason,
            }
        )
    return refunded
