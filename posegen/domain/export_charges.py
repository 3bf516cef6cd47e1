"""Paid exports (`fill: ai_expand`): which files FLUX fills, one charge per file, and refunds.

A file is charged when FLUX will make it: an unchanged photo whose format a crop cannot fill
without cutting a real part of it (outpainted), or an AI background that cannot cover the format
without the same loss (generated again). The API charges before it submits the run (so a user
short of credits gets 403 and nothing happens); the run charges again by the same keys (finding
the API's charges), refunds every file it did not deliver before it completes, and its failure
hooks and the refund reconciler refund the rest: each charge is refunded at most once by the
ledger's rule.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from posegen.config import get_settings
from posegen.db.models import CreditTransaction, Pose, User
from posegen.domain import credits
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import Fill, ai_fill_formats, ai_fill_kind
from posegen.errors import NotFound, ServiceUnavailable

CHARGE_PREFIX: Final = "export-fill:"
CHARGE_REASON: Final = "export_ai_fill"


def charge_key(request_id: uuid.UUID, pose_id: uuid.UUID, format_name: str) -> str:
    return f"{CHARGE_PREFIX}{request_id}:{pose_id}:{format_name}"


def request_prefix(request_id: uuid.UUID) -> str:
    return f"{CHARGE_PREFIX}{request_id}:"


def parse_charge_key(key: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(request id, pose id, format) of an export charge key."""
    request_id, pose_id, format_name = key.removeprefix(CHARGE_PREFIX).split(":", 2)
    return uuid.UUID(request_id), uuid.UUID(pose_id), format_name


@dataclass(frozen=True)
class PaidFiles:
    """The files of one export request that FLUX fills, per pose (empty: a free export)."""

    request_id: uuid.UUID
    by_pose: dict[uuid.UUID, tuple[str, ...]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(formats) for formats in self.by_pose.values())

    def formats_of(self, pose_id: uuid.UUID) -> tuple[str, ...]:
        return self.by_pose.get(pose_id, ())

    def keys(self) -> list[str]:
        return [
            charge_key(self.request_id, pose_id, name)
            for pose_id, names in self.by_pose.items()
            for name in names
        ]


def paid_files(
    session: Session,
    request_id: uuid.UUID,
    pose_ids: tuple[uuid.UUID, ...],
    request: ExportRequest,
) -> PaidFiles:
    """Which files of the planned poses an `ai_expand` request has FLUX fill (none otherwise)."""
    if request.fill != Fill.AI_EXPAND:
        return PaidFiles(request_id)
    poses = {p.id: p for p in session.scalars(select(Pose).where(Pose.id.in_(pose_ids)))}
    by_pose: dict[uuid.UUID, tuple[str, ...]] = {}
    for pose_id in pose_ids:
        pose = poses.get(pose_id)
        if pose is None:
            continue
        kind = ai_fill_kind(pose.background_changed, pose.background_mode, pose.background_prompt)
        names = ai_fill_formats(kind, (pose.width, pose.height), request.specs)
        if names:
            by_pose[pose_id] = names
    return PaidFiles(request_id, by_pose)


def cost_per_file(user: User) -> int:
    return 0 if user.enterprise_unlimited else get_settings().ai_expand_cost


@dataclass(frozen=True)
class FillCharge:
    """What a paid export cost: credits in all, files, the balance after, and whether this call
    took the credits (False: they were taken before by the same request)."""

    credits: int
    files: int
    balance: int
    newly_charged: bool


def charge_files(
    session: Session,
    user_id: uuid.UUID,
    files: PaidFiles,
    *,
    flow_run_id: uuid.UUID | None = None,
) -> FillCharge:
    """Charge each FLUX-filled file once (all or none); InsufficientCredits takes nothing."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    if not files.count:
        return FillCharge(0, 0, user.credits, newly_charged=False)
    if not get_settings().flux_configured:
        raise ServiceUnavailable("AI fill is not configured (no FLUX API key); nothing was charged")
    price = cost_per_file(user)
    items = [
        credits.ChargeItem(charge_key(files.request_id, pose_id, name), price, str(pose_id))
        for pose_id, names in files.by_pose.items()
        for name in names
    ]
    batch = credits.charge_many(
        session, user_id, items, reason=CHARGE_REASON, flow_run_id=flow_run_id
    )
    return FillCharge(batch.amount, len(items), batch.balance, batch.created)


def record_flow_run(session: Session, request_id: uuid.UUID, flow_run_id: uuid.UUID) -> None:
    """Tie the request's charges to its run, so the reconciler can ask Prefect how it ended."""
    session.execute(
        update(CreditTransaction)
        .where(
            CreditTransaction.idempotency_key.startswith(request_prefix(request_id)),
            CreditTransaction.flow_run_id.is_(None),
            CreditTransaction.refund_of.is_(None),
        )
        .values(flow_run_id=flow_run_id)
    )
    session.commit()


def refund_files(
    session: Session,
    request_id: uuid.UUID,
    *,
    delivered: frozenset[tuple[uuid.UUID, str]] = frozenset(),
    flow_run_id: uuid.UUID | None = None,
) -> int:
    """Refund every charge of the request whose file was not delivered; the credits given back
    by this call (a charge refunded before counts 0: the ledger refunds once)."""
    refund = aliased(CreditTransaction)
    open_keys = session.scalars(
        select(CreditTransaction.idempotency_key)
        .outerjoin(refund, refund.refund_of == CreditTransaction.id)
        .where(
            CreditTransaction.idempotency_key.startswith(request_prefix(request_id)),
            refund.id.is_(None),
        )
    ).all()
    given = 0
    for key in open_keys:
        _, pose_id, name = parse_charge_key(key)
        if (pose_id, name) in delivered:
            continue
        entry = credits.refund_charge(session, key, reason="refund", flow_run_id=flow_run_id)
        if entry is not None and entry.created:
            given += entry.amount
    return given
