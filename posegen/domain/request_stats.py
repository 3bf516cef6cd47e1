"""Pose-request statistics: SQL loading, pandas computation, snapshots, and their rendering.

The `pose-request-stats` flow calls `load_request_frame` → `compute_stats` → `store_snapshot`
and publishes `render_markdown` / `top_voted_rows`; all of it runs without Prefect, so tests
check the numbers directly. Votes are aggregated in SQL (per request and time window): the
database counts a million rows faster than it can ship them to pandas.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import String, case, cast, func, select
from sqlalchemy.orm import Session

from posegen.db.community import (
    OPEN_STATUSES,
    PoseCategory,
    PoseRequest,
    PoseRequestStatsSnapshot,
    PoseRequestStatusChange,
    PoseRequestVote,
    RequestStatus,
)

TOP_N = 20
TRENDING_DAYS = 7
DECAY_DAYS = 30
# Fider's trending ranking: (5 * recent votes - 1) / (age in hours + 2) ^ 1.4.
DECAY_VOTE_WEIGHT = 5
DECAY_GRAVITY = 1.4
UNCATEGORIZED = "Uncategorized"
_OPEN = [s.value for s in OPEN_STATUSES]
# Decided requests: accepted (whatever happened after) or rejected; pending ones are not yet.
_ACCEPTED = (RequestStatus.APPROVED, RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED)

FRAME_COLUMNS = [
    "id",
    "pose_name",
    "status",
    "category",
    "votes_count",
    "created_at",
    "votes_7d",
    "votes_30d",
    "first_action_at",
    "completed_at",
]


# -- loading -----------------------------------------------------------------------------------


def load_request_frame(session: Session, now: datetime) -> pd.DataFrame:
    """One row per request with its recent vote counts and lifecycle times (FRAME_COLUMNS).

    One query: votes and history are aggregated per request in subqueries and joined in the
    database, so only 100k narrow rows travel, and ids come as text (UUID objects would cost
    seconds in pandas' joins and sorts).
    """
    votes = (
        select(
            PoseRequestVote.request_id,
            func.sum(
                case(
                    (PoseRequestVote.created_at >= now - timedelta(days=TRENDING_DAYS), 1), else_=0
                )
            ).label("votes_7d"),
            func.count().label("votes_30d"),
        )
        .where(PoseRequestVote.created_at >= now - timedelta(days=DECAY_DAYS))
        .group_by(PoseRequestVote.request_id)
        .subquery()
    )
    completed_at = case(
        (
            PoseRequestStatusChange.to_status == RequestStatus.COMPLETED,
            PoseRequestStatusChange.created_at,
        )
    )
    changes = (
        select(
            PoseRequestStatusChange.request_id,
            func.min(PoseRequestStatusChange.created_at).label("first_action_at"),
            func.max(completed_at).label("completed_at"),
        )
        .group_by(PoseRequestStatusChange.request_id)
        .subquery()
    )
    statement = (
        select(
            cast(PoseRequest.id, String),
            PoseRequest.pose_name,
            PoseRequest.status,
            func.coalesce(PoseCategory.name, UNCATEGORIZED),
            PoseRequest.votes_count,
            PoseRequest.created_at,
            func.coalesce(votes.c.votes_7d, 0),
            func.coalesce(votes.c.votes_30d, 0),
            changes.c.first_action_at,
            changes.c.completed_at,
        )
        .outerjoin(PoseCategory, PoseCategory.id == PoseRequest.category_id)
        .outerjoin(votes, votes.c.request_id == PoseRequest.id)
        .outerjoin(changes, changes.c.request_id == PoseRequest.id)
    )
    # Core rows, transposed in C: ORM rows and DataFrame.from_records are several times slower.
    rows = session.connection().execute(statement).all()
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in FRAME_COLUMNS]
    return typed_frame(pd.DataFrame(dict(zip(FRAME_COLUMNS, columns, strict=True))))


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers, ids as text, times as UTC (SQLite hands back naive datetimes)."""
    frame = frame.astype({"id": str, "votes_count": "int64", "votes_7d": "int64"})
    frame["votes_30d"] = frame["votes_30d"].astype("int64")
    for column in ("created_at", "first_action_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame[FRAME_COLUMNS]


# -- computing ---------------------------------------------------------------------------------


def compute_stats(frame: pd.DataFrame, now: datetime, top_n: int = TOP_N) -> dict[str, Any]:
    """Everything the snapshot holds, JSON-ready (camelCase keys, plain Python numbers)."""
    by_status = {
        str(status): int(count)
        for status, count in frame["status"]
        .value_counts()
        .reindex([s.value for s in RequestStatus], fill_value=0)
        .items()
    }
    by_category = (
        frame.groupby("category").size().reset_index(name="count")
        if len(frame)
        else pd.DataFrame(columns=["category", "count"])
    )
    by_category = by_category.sort_values(["count", "category"], ascending=[False, True])
    return {
        "generatedAt": now.isoformat(),
        "totalRequests": len(frame),
        "totalVotes": int(frame["votes_count"].sum()),
        "byStatus": by_status,
        "byCategory": [
            {"category": str(row.category), "count": int(row.count)}
            for row in by_category.itertuples(index=False)
        ],
        "topVoted": top_voted(frame, top_n),
        "trending7d": trending_recent(frame, top_n),
        "trendingDecay": trending_decay(frame, now, top_n),
        **ratios(by_status),
        "medianHoursToCompletion": _median_hours(frame["completed_at"] - frame["created_at"]),
        "medianHoursToFirstAction": _median_hours(frame["first_action_at"] - frame["created_at"]),
    }


def top_voted(frame: pd.DataFrame, top_n: int = TOP_N) -> list[dict[str, Any]]:
    """All requests, most votes first; ties go to the newer request."""
    top = _sorted(frame, ["votes_count", "created_at"], [False, False]).head(top_n)
    return [
        {**_identity(row), "votesCount": int(row.votes_count)}
        for row in top.itertuples(index=False)
    ]


def trending_recent(frame: pd.DataFrame, top_n: int = TOP_N) -> list[dict[str, Any]]:
    """Open requests by votes in the last 7 days (those with none are not trending)."""
    recent = frame[frame["status"].isin(_OPEN) & (frame["votes_7d"] > 0)]
    top = _sorted(recent, ["votes_7d", "votes_count", "created_at"], [False, False, False])
    return [
        {**_identity(row), "votes7d": int(row.votes_7d), "votesCount": int(row.votes_count)}
        for row in top.head(top_n).itertuples(index=False)
    ]


def decay_scores(frame: pd.DataFrame, now: datetime) -> pd.Series:
    """score = (5 * votes in the last 30 days - 1) / (hours since created + 2) ^ 1.4."""
    hours = (pd.Timestamp(now) - frame["created_at"]).dt.total_seconds() / 3600
    return (DECAY_VOTE_WEIGHT * frame["votes_30d"] - 1) / (hours + 2) ** DECAY_GRAVITY


def trending_decay(frame: pd.DataFrame, now: datetime, top_n: int = TOP_N) -> list[dict[str, Any]]:
    """Open requests by the decay score: recent votes count, and age pulls a request down."""
    open_requests = frame[frame["status"].isin(_OPEN)].assign(
        score=lambda f: decay_scores(f, now),
        hours=lambda f: (pd.Timestamp(now) - f["created_at"]).dt.total_seconds() / 3600,
    )
    top = _sorted(open_requests, ["score", "created_at"], [False, False]).head(top_n)
    return [
        {
            **_identity(row),
            "votes30d": int(row.votes_30d),
            "hoursSinceCreated": round(float(row.hours), 2),
            "score": round(float(row.score), 6),
        }
        for row in top.itertuples(index=False)
    ]


def ratios(by_status: dict[str, int]) -> dict[str, float | None]:
    """Shares of decided requests (accepted or rejected); None before any decision."""
    accepted = sum(by_status.get(s.value, 0) for s in _ACCEPTED)
    rejected = by_status.get(RequestStatus.REJECTED.value, 0)
    decided = accepted + rejected
    if not decided:
        return {"approvalRatio": None, "rejectionRatio": None}
    return {
        "approvalRatio": round(accepted / decided, 4),
        "rejectionRatio": round(rejected / decided, 4),
    }


def _median_hours(durations: pd.Series) -> float | None:
    median = durations.dropna().median()
    if pd.isna(median):
        return None
    return round(median.total_seconds() / 3600, 2)


def _sorted(frame: pd.DataFrame, by: list[str], ascending: list[bool]) -> pd.DataFrame:
    # The id last makes the order total: equal scores still rank the same way every run.
    return frame.sort_values([*by, "id"], ascending=[*ascending, True], kind="mergesort")


def _identity(row: Any) -> dict[str, Any]:
    # SQLite keeps UUIDs as 32 hex digits: spell every id the way the API does.
    return {"id": str(uuid.UUID(row.id)), "poseName": row.pose_name, "status": row.status}


# -- live numbers, snapshots, rendering ----------------------------------------------------------


def live_stats(session: Session, top_n: int = 10) -> dict[str, Any]:
    """GET /admin/pose-requests/stats: SQL aggregates only, cheap enough for every call."""
    counts = dict(
        session.execute(select(PoseRequest.status, func.count()).group_by(PoseRequest.status)).all()
    )
    by_status = {s.value: int(counts.get(s.value, 0)) for s in RequestStatus}
    categories = session.execute(
        select(func.coalesce(PoseCategory.name, UNCATEGORIZED), func.count())
        .select_from(PoseRequest)
        .outerjoin(PoseCategory, PoseCategory.id == PoseRequest.category_id)
        .group_by(PoseCategory.name)
    ).all()
    top = session.execute(
        select(PoseRequest.id, PoseRequest.pose_name, PoseRequest.status, PoseRequest.votes_count)
        .order_by(PoseRequest.votes_count.desc(), PoseRequest.created_at.desc(), PoseRequest.id)
        .limit(top_n)
    ).all()
    total_votes = session.scalar(select(func.coalesce(func.sum(PoseRequest.votes_count), 0)))
    return {
        # The seed's stats shape first (its admin dashboard reads these), then posegen's detail.
        "total": sum(by_status.values()),
        **{_camel(status): count for status, count in by_status.items()},
        "generatedAt": datetime.now(UTC).isoformat(),
        "totalRequests": sum(by_status.values()),
        "totalVotes": int(total_votes or 0),
        "byStatus": by_status,
        "byCategory": [
            {"category": name, "count": int(count)}
            for name, count in sorted(categories, key=lambda c: (-c[1], c[0]))
        ],
        "topVoted": [
            {"id": str(i), "poseName": name, "status": status, "votesCount": votes}
            for i, name, status, votes in top
        ],
        **ratios(by_status),
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def store_snapshot(
    session: Session, stats: dict[str, Any], flow_run_id: uuid.UUID | None = None
) -> uuid.UUID:
    snapshot = PoseRequestStatsSnapshot(id=uuid.uuid4(), stats=stats, flow_run_id=flow_run_id)
    session.add(snapshot)
    session.commit()
    return snapshot.id


def list_snapshots(
    session: Session, *, days: int, offset: int, limit: int
) -> tuple[list[PoseRequestStatsSnapshot], int]:
    since = datetime.now(UTC) - timedelta(days=days)
    where = PoseRequestStatsSnapshot.created_at >= since
    total = session.scalar(select(func.count()).where(where)) or 0
    items = session.scalars(
        select(PoseRequestStatsSnapshot)
        .where(where)
        .order_by(PoseRequestStatsSnapshot.created_at.desc(), PoseRequestStatsSnapshot.id)
        .offset(offset)
        .limit(limit)
    )
    return list(items), total


def top_voted_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The table artifact: one row per top-voted request."""
    return [
        {
            "rank": rank,
            "poseName": row["poseName"],
            "status": row["status"],
            "votes": row["votesCount"],
            "id": row["id"],
        }
        for rank, row in enumerate(stats["topVoted"], start=1)
    ]


def render_markdown(stats: dict[str, Any]) -> str:
    """The markdown artifact an operator reads in the Prefect UI."""

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    def hours(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f} h"

    lines = [
        f"# Pose requests — {stats['generatedAt']}",
        "",
        f"**{stats['totalRequests']}** requests, **{stats['totalVotes']}** votes. "
        f"Approval {pct(stats['approvalRatio'])}, rejection {pct(stats['rejectionRatio'])}. "
        f"Median time to first admin action {hours(stats['medianHoursToFirstAction'])}, "
        f"to completion {hours(stats['medianHoursToCompletion'])}.",
        "",
        "## By status",
        "",
        "| status | requests |",
        "|---|---:|",
        *(f"| {status} | {count} |" for status, count in stats["byStatus"].items()),
        "",
        "## By category",
        "",
        "| category | requests |",
        "|---|---:|",
        *(f"| {_cell(c['category'])} | {c['count']} |" for c in stats["byCategory"]),
        "",
        f"## Trending: votes in the last {TRENDING_DAYS} days",
        "",
        "| # | pose | status | votes (7 d) | votes |",
        "|---:|---|---|---:|---:|",
        *(
            f"| {i} | {_cell(r['poseName'])} | {r['status']} | {r['votes7d']} | {r['votesCount']} |"
            for i, r in enumerate(stats["trending7d"], start=1)
        ),
        "",
        "## Trending: decay ranking (5 * votes in 30 d - 1) / (hours + 2)^1.4",
        "",
        "| # | pose | status | votes (30 d) | age (h) | score |",
        "|---:|---|---|---:|---:|---:|",
        *(
            f"| {i} | {_cell(r['poseName'])} | {r['status']} | {r['votes30d']} "
            f"| {r['hoursSinceCreated']} | {_score(r['score'])} |"
            for i, r in enumerate(stats["trendingDecay"], start=1)
        ),
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """User text inside a markdown table: a pipe or newline would break the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _score(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "—"
