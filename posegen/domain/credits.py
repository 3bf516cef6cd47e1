"""The credits ledger: charges, refunds and grants, each one conditional UPDATE plus one ledger row.

Balance always equals the sum of the user's ledger rows (grants included), so the invariant
can be checked for every user at any time, also under concurrency.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posegen.db.models import CreditTransaction, User
from posegen.errors import InsufficientCredits, NotFound


@dataclass(frozen=True)
class LedgerEntry:
    """What a charge or refund did, including whether this call did it or found it done."""

    transaction_id: uuid.UUID
    amount: int
    balance: int
    created: bool


def balance(session: Session, user_id: uuid.UUID) -> int:
    credits = session.scalar(select(User.credits).where(User.id == user_id))
    if credits is None:
        raise NotFound("User not found")
    return credits


def ledger_sum(session: Session, user_id: uuid.UUID) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.user_id == user_id
        )
    )
    return int(total or 0)


def grant_credits(
    session: Session,
    user_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str,
    reason: str = "grant",
) -> LedgerEntry:
    """Add credits (sign-up, purchase, admin grant); idempotent by key."""
    return _apply(session, user_id, amount, idempotency_key=idempotency_key, reason=reason)


def charge_credits(
    session: Session,
    user_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str,
    reason: str,
    reference: str | None = None,
    flow_run_id: uuid.UUID | None = None,
) -> LedgerEntry:
    """Take `amount` credits once per idempotency key; InsufficientCredits changes nothing.

    A repeated key returns the first charge (so a retried flow or API call never charges twice).
    """
    return _apply(
        session,
        user_id,
        -amount,
        idempotency_key=idempotency_key,
        reason=reason,
        reference=reference,
        flow_run_id=flow_run_id,
    )


@dataclass(frozen=True)
class ChargeItem:
    """One charge of a batch: its idempotency key, credits, and what it pays for."""

    idempotency_key: str
    amount: int
    reference: str | None = None


@dataclass(frozen=True)
class BatchCharge:
    """What `charge_many` did: credits taken by the batch in all, the balance after it, and
    whether this call took them (False: an earlier call with the same keys had)."""

    amount: int
    balance: int
    created: bool


def charge_many(
    session: Session,
    user_id: uuid.UUID,
    items: list[ChargeItem],
    *,
    reason: str,
    flow_run_id: uuid.UUID | None = None,
) -> BatchCharge:
    """One ledger row per item, all or none: one conditional UPDATE for their sum and the rows
    in one transaction, so a user short of credits is charged for nothing (InsufficientCredits)
    and each item can later be refunded on its own (`refund_charge` by its key).

    Keys charged before (a retried flow or API call) are not charged again.
    """
    keys = [item.idempotency_key for item in items]
    done = set(
        session.scalars(
            select(CreditTransaction.idempotency_key).where(
                CreditTransaction.idempotency_key.in_(keys)
            )
        )
    )
    missing = [item for item in items if item.idempotency_key not in done]
    total = sum(item.amount for item in items)
    if not missing:
        return BatchCharge(total, balance(session, user_id), created=False)
    delta = -sum(item.amount for item in missing)
    new_balance = _apply_delta(session, user_id, delta)
    session.add_all(
        CreditTransaction(
            user_id=user_id,
            amount=-item.amount,
            reason=reason,
            reference=item.reference,
            idempotency_key=item.idempotency_key,
            flow_run_id=flow_run_id,
        )
        for item in missing
    )
    try:
        session.commit()
    except IntegrityError:
        # A concurrent call with the same keys won: it charged them (all, in one transaction).
        session.rollback()
        return BatchCharge(total, balance(session, user_id), created=False)
    return BatchCharge(total, new_balance, created=True)


def refund_charge(
    session: Session,
    charge_key: str,
    *,
    reason: str = "refund",
    flow_run_id: uuid.UUID | None = None,
) -> LedgerEntry | None:
    """Give back a charge exactly once; None when there was no such charge (nothing to refund)."""
    charge = session.scalar(
        select(CreditTransaction).where(CreditTransaction.idempotency_key == charge_key)
    )
    if charge is None:
        return None
    return _apply(
        session,
        charge.user_id,
        -charge.amount,
        idempotency_key=f"refund:{charge_key}",
        reason=reason,
        reference=charge.reference,
        refund_of=charge.id,
        flow_run_id=flow_run_id,
    )


def find_transaction(session: Session, idempotency_key: str) -> CreditTransaction | None:
    return session.scalar(
        select(CreditTransaction).where(CreditTransaction.idempotency_key == idempotency_key)
    )


def is_refunded(session: Session, transaction_id: uuid.UUID) -> bool:
    return (
        session.scalar(
            select(CreditTransaction.id).where(CreditTransaction.refund_of == transaction_id)
        )
        is not None
    )


def _apply(
    session: Session,
    user_id: uuid.UUID,
    delta: int,
    *,
    idempotency_key: str,
    reason: str,
    reference: str | None = None,
    refund_of: uuid.UUID | None = None,
    flow_run_id: uuid.UUID | None = None,
) -> LedgerEntry:
    """One balance change and its ledger row in one transaction, committed here.

    The UPDATE is conditional (`credits + delta >= 0`), so concurrent charges cannot overdraw;
    the unique idempotency key makes a concurrent duplicate lose at insert time and roll back.
    """
    existing = find_transaction(session, idempotency_key)
    if existing is not None:
        return LedgerEntry(existing.id, existing.amount, balance(session, user_id), created=False)
    new_balance = _apply_delta(session, user_id, delta)
    entry = CreditTransaction(
        user_id=user_id,
        amount=delta,
        reason=reason,
        reference=reference,
        idempotency_key=idempotency_key,
        refund_of=refund_of,
        flow_run_id=flow_run_id,
    )
    session.add(entry)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = find_transaction(session, idempotency_key)
        if existing is None:
            raise
        return LedgerEntry(existing.id, existing.amount, balance(session, user_id), created=False)
    return LedgerEntry(entry.id, delta, new_balance, created=True)


def _apply_delta(session: Session, user_id: uuid.UUID, delta: int) -> int:
    """The conditional UPDATE every balance change goes through (`credits + delta >= 0`, so
    concurrent charges cannot overdraw); the new balance, or the error a caller shows."""
    new_balance = session.scalar(
        update(User)
        .where(User.id == user_id, User.credits + delta >= 0)
        .values(credits=User.credits + delta)
        .returning(User.credits)
    )
    if new_balance is None:
        current = session.scalar(select(User.credits).where(User.id == user_id))
        session.rollback()
        if current is None:
            raise NotFound("User not found")
        raise InsufficientCredits(required=-delta, balance=current)
    return int(new_balance)
