"""Background-change outcomes: recorded once per request where a change ends, for the alerts.

A change ends in one of three places: `complete_change` (the flow's last write), `fail_change`
(the flow's failure hooks and the reconciler, when they refund) or `abort_change` (the API could
not submit the run). Each records here in its own transaction, so the alerts and `/metrics`
count what the flow-run processes did, not what one API process saw.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from posegen.db.models import CreditTransaction, as_utc
from posegen.db.operations import BackgroundChangeOutcome

# Upper bounds (seconds) of the change-duration histogram: what a user waits, request to end.
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


def record_outcome(
    session: Session,
    *,
    request_id: uuid.UUID,
    pose_id: uuid.UUID,
    outcome: Outcome,
    charge_key: str,
) -> None:
    """Add the outcome to the caller's transaction; a request that already has one keeps it.

    INSERT .. ON CONFLICT DO NOTHING rather than read-then-insert: a failure hook racing a late
    completion must not make the caller's commit (the pose's own update) fail on the key.
    """
    charged_at = session.scalar(
        select(CreditTransaction.created_at).where(CreditTransaction.idempotency_key == charge_key)
    )
    now = datetime.now(UTC)
    duration = (now - as_utc(charged_at)).total_seconds() if charged_at else 0.0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(BackgroundChangeOutcome)
        .values(
            request_id=request_id,
            pose_id=pose_id,
            outcome=outcome.value,
            duration_seconds=max(duration, 0.0),
            finished_at=now,
        )
        .on_conflict_do_nothing(index_elements=["request_id"])
    )


def outcome_counts(session: Session, *, since: datetime | None = None) -> dict[Outcome, int]:
    """How many changes ended each way (since `since`, or ever)."""
    query = select(BackgroundChangeOutcome.outcome, func.count()).group_by(
        BackgroundChangeOutcome.outcome
    )
    if since is not None:
        query = query.where(BackgroundChangeOutcome.finished_at >= since)
    counts = {outcome: 0 for outcome in Outcome}
    for name, count in session.execute(query):
        counts[Outcome(name)] = int(count)
    return counts


def duration_histogram(session: Session) -> tuple[list[int], float, int]:
    """Completed changes' durations: cumulative counts per DURATION_BUCKETS bound, sum, count.

    One aggregate query: the table is append-only and indexed by time, so a scrape reads it in
    one pass rather than every process keeping (and losing) its own histogram.
    """
    duration = BackgroundChangeOutcome.duration_seconds
    columns = [func.count().filter(duration <= bound) for bound in DURATION_BUCKETS]
    row = session.execute(
        select(*columns, func.coalesce(func.sum(duration), 0.0), func.count()).where(
            BackgroundChangeOutcome.outcome == Outcome.COMPLETED.value
        )
    ).one()
    return [int(value) for value in row[:-2]], float(row[-2]), int(row[-1])
