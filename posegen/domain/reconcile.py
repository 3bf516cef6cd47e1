"""Finding charges that will never be refunded by their own run, and deciding to refund them.

A flow's failure hooks refund most failures, but a run killed with SIGKILL, a lost runner or an
API that died between charge and submission leave a charge behind with nobody to refund it.
This module lists such open charges and decides, from how the run ended, which to refund.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from posegen.db.models import CreditTransaction, Pose, as_utc
from posegen.domain import export_charges
from posegen.domain.background import charge_key

# Prefect state types after which a run will never refund its own charge.
DEAD_STATES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
CHARGE_PREFIX = charge_key(uuid.UUID(int=0)).rsplit(":", 1)[0] + ":"


@dataclass(frozen=True)
class OpenCharge:
    """A background-change charge with no refund yet."""

    charge_key: str
    user_id: uuid.UUID
    pose_id: uuid.UUID
    request_id: uuid.UUID
    amount: int
    flow_run_id: uuid.UUID | None
    created_at: datetime
    # "background-change", or "export" (one file of a paid `ai_expand` export: its refund
    # touches only the ledger, never the pose).
    kind: str = "background-change"


def open_charges(session: Session, *, since: datetime, until: datetime) -> list[OpenCharge]:
    """Unrefunded background-change and paid-export charges made in [since, until)."""
    refund = aliased(CreditTransaction)
    charges = session.scalars(
        select(CreditTransaction)
        .outerjoin(refund, refund.refund_of == CreditTransaction.id)
        .where(
            refund.id.is_(None),
            or_(
                CreditTransaction.idempotency_key.startswith(CHARGE_PREFIX),
                CreditTransaction.idempotency_key.startswith(export_charges.CHARGE_PREFIX),
            ),
            CreditTransaction.created_at >= since,
            CreditTransaction.created_at < until,
        )
        .order_by(CreditTransaction.created_at)
    ).all()
    pose_ids = {uuid.UUID(str(charge.reference)) for charge in charges}
    poses = {pose.id: pose for pose in session.scalars(select(Pose).where(Pose.id.in_(pose_ids)))}
    result = []
    for charge in charges:
        if charge.idempotency_key.startswith(export_charges.CHARGE_PREFIX):
            # A paid export's run refunds what it did not deliver before it completes, so
            # only how its run ended matters (`refund_reason`), not the pose.
            export_request, export_pose, _ = export_charges.parse_charge_key(charge.idempotency_key)
            result.append(
                OpenCharge(
                    charge_key=charge.idempotency_key,
                    user_id=charge.user_id,
                    pose_id=export_pose,
                    request_id=export_request,
                    amount=-charge.amount,
                    flow_run_id=charge.flow_run_id,
                    created_at=charge.created_at,
                    kind="export",
                )
            )
            continue
        request_id = uuid.UUID(charge.idempotency_key.removeprefix(CHARGE_PREFIX))
        pose_id = uuid.UUID(str(charge.reference))
        pose = poses.get(pose_id)
        if pose is not None and pose.change_request_id == request_id and pose.status == "ready":
            continue  # this request's change completed: its charge is earned
        run_id = charge.flow_run_id
        if run_id is None and pose is not None and pose.change_request_id == request_id:
            run_id = pose.change_flow_run_id
        result.append(
            OpenCharge(
                charge_key=charge.idempotency_key,
                user_id=charge.user_id,
                pose_id=pose_id,
                request_id=request_id,
                amount=-charge.amount,
                flow_run_id=run_id,
                created_at=charge.created_at,
            )
        )
    return result


STALLED = "its flow run stopped responding"


def refund_reason(
    charge: OpenCharge,
    run_state: str | None,
    run_exists: bool,
    *,
    now: datetime,
    grace: timedelta,
    running_timeout: timedelta,
) -> str | None:
    """Why this charge must be refunded now, or None to leave it (its run may still finish).

    A run still scheduled is left alone however old (it starts when a runner is back); a run
    Running for longer than any change can take was killed with its process (SIGKILL, lost
    machine) and will never report, so it is treated as dead.
    """
    age = now - as_utc(charge.created_at)
    old_enough = age >= grace
    if charge.flow_run_id is None:
        return "no flow run was started for this charge" if old_enough else None
    if not run_exists:
        return "its flow run no longer exists" if old_enough else None
    if run_state in DEAD_STATES:
        return f"its flow run ended {run_state.lower()}"
    if run_state == "RUNNING" and age >= running_timeout:
        return STALLED
    return None
