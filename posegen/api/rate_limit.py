"""Per-user rate limits on the endpoints that start work, so one user cannot flood the queue.

Each (user, bucket) is a token bucket kept as one timestamp (the generic cell rate algorithm):
`refilled_at` is when the bucket would be full again. A request costs one interval (60 s / N);
it is accepted while the bucket's debt after paying stays within a minute, which allows a burst
of N and then one request every interval. The check-and-take is one conditional upsert, so it is
atomic on SQLite and PostgreSQL alike, and every API process shares the buckets.

Routes take the check as a dependency (`dependencies=[per_user(Bucket.BACKGROUND)]`): it runs
after authentication and before the route body, so a refused request never charges credits,
reads an upload or submits a run.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends, params
from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from posegen.api.deps import CurrentUser, SessionDep
from posegen.api.metrics import count_rate_limited
from posegen.config import get_settings
from posegen.db.models import RateLimit
from posegen.errors import RateLimited

__all__ = ["RESPONSES", "Bucket", "check_rate", "per_user"]

_PERIOD = 60.0
# Float rounding: 60/N added up N times to a Unix time (whose doubles are ~2e-7 s apart) may
# land past the boundary and cost a burst its last request; a millisecond absorbs that for any
# limit up to thousands a minute and is far below anything a client could exploit.
_SLACK = 1e-3

# For the routes' OpenAPI `responses`: clients should expect the 429.
RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "Rate limited: `retryAfter` (and the `Retry-After` header) says how many "
        "seconds to wait",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}


class Bucket(StrEnum):
    """The kinds of request limited separately, each by its own POSEGEN_RATE_LIMIT_* setting."""

    BACKGROUND = "background"
    EXPORTS = "exports"
    REGENERATE_EXPORT = "regenerate_export"
    REQUESTS = "requests"
    UPLOADS = "uploads"


@dataclass(frozen=True)
class _Limit:
    setting: str
    what: str  # as the refusal names it: "Too many {what}"

    @property
    def per_minute(self) -> int:
        return int(getattr(get_settings(), self.setting))


_LIMITS = {
    Bucket.BACKGROUND: _Limit("rate_limit_background_per_minute", "background changes"),
    Bucket.EXPORTS: _Limit("rate_limit_exports_per_minute", "exports"),
    Bucket.REGENERATE_EXPORT: _Limit(
        "rate_limit_regenerate_export_per_minute", "export regenerations"
    ),
    Bucket.REQUESTS: _Limit("rate_limit_requests_per_minute", "pose requests"),
    Bucket.UPLOADS: _Limit("rate_limit_uploads_per_minute", "uploads"),
}


def per_user(bucket: Bucket) -> params.Depends:
    """The route dependency that takes one token from the caller's `bucket` or answers 429."""

    def check(user: CurrentUser, session: SessionDep) -> None:
        check_rate(session, user.id, bucket)

    return Depends(check)


def check_rate(
    session: Session, user_id: uuid.UUID, bucket: Bucket, *, now: float | None = None
) -> None:
    """Take one token from the user's bucket, or raise RateLimited with when to come back.

    Commits at once: the bucket row must not stay locked (PostgreSQL) or the database file
    write-locked (SQLite) while the request goes on to do its real work.
    """
    limit = _LIMITS[bucket]
    per_minute = limit.per_minute
    if per_minute <= 0 or not get_settings().rate_limit_enabled:
        return
    now = time.time() if now is None else now
    interval = _PERIOD / per_minute
    if _take(session, user_id, bucket, now, interval):
        session.commit()
        return
    refilled_at = session.scalar(
        select(RateLimit.refilled_at).where(
            RateLimit.user_id == user_id, RateLimit.bucket == bucket.value
        )
    )
    session.commit()
    # The bucket takes another request once its debt has shrunk to a minute minus one interval.
    wait = (refilled_at or now) + interval - _PERIOD - now
    retry_after = max(1, math.ceil(wait))
    count_rate_limited(bucket.value)
    raise RateLimited(
        f"Too many {limit.what}: at most {per_minute} a minute. Try again in {retry_after} s.",
        retry_after=retry_after,
    )


def _take(
    session: Session, user_id: uuid.UUID, bucket: Bucket, now: float, interval: float
) -> bool:
    """One upsert that takes a token if there is one; True when it did.

    A new bucket starts full, less this request. An existing one is advanced only when the
    WHERE allows it, and RETURNING yields a row only then: whether a token was taken needs no
    second read (only a refusal reads the row again, for its Retry-After).
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    refilled_at = RateLimit.refilled_at
    statement = (
        insert(RateLimit)
        .values(user_id=user_id, bucket=bucket.value, refilled_at=now + interval)
        .on_conflict_do_update(
            index_elements=[RateLimit.user_id, RateLimit.bucket],
            set_={"refilled_at": case((refilled_at > now, refilled_at), else_=now) + interval},
            where=refilled_at <= now + _PERIOD - interval + _SLACK,
        )
        .returning(RateLimit.refilled_at)
    )
    return session.execute(statement).first() is not None
