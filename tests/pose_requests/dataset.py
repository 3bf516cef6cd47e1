"""A small request board whose statistics were computed by hand (see EXPECTED).

NOW is fixed; every time is an offset from it, so the decay scores are exact numbers:
(5 * votes in 30 days - 1) / (hours since created + 2) ^ 1.4.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from posegen.db.community import (
    PoseCategory,
    PoseRequest,
    PoseRequestStatusChange,
    PoseRequestVote,
)
from posegen.db.session import session_scope
from posegen.domain.pose_requests import normalize_name
from tests.conftest import make_user

NOW = datetime(2026, 1, 31, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# name, status, category, created (hours before NOW), vote times (hours before NOW),
# history as (to_status, hours after creation).
REQUESTS: list[tuple[str, str, str | None, float, list[float], list[tuple[str, float]]]] = [
    # 41.6 days old: votes at 1 d, 1 d (7 d window), 20 d (30 d window), 35 d (neither).
    ("R1", "approved", "Standing", 998, [24, 24, 480, 840], [("approved", 1)]),
    ("R2", "pending", "Sitting", 8, [1], []),
    ("R3", "in_progress", "Standing", 98, [48, 48, 48], [("approved", 2), ("in_progress", 10)]),
    (
        "R4",
        "completed",
        "Standing",
        200,
        [100] * 5,
        [("approved", 4), ("in_progress", 6), ("completed", 24)],
    ),
    ("R5", "rejected", None, 50, [], [("rejected", 6)]),
    (
        "R6",
        "completed",
        "Sitting",
        500,
        [],
        [("approved", 10), ("in_progress", 20), ("completed", 48)],
    ),
    ("R7", "pending", "Sitting", 2, [], []),
]

# R1's first admin action is at +1 h: medians of first action are over R1 1, R3 2, R4 4,
# R5 6, R6 10 → 4 h; completion over R4 24, R6 48 → 36 h.
EXPECTED: dict[str, Any] = {
    "totalRequests": 7,
    "totalVotes": 13,
    "byStatus": {"pending": 2, "approved": 1, "in_progress": 1, "completed": 2, "rejected": 1},
    "byCategory": [
        {"category": "Sitting", "count": 3},
        {"category": "Standing", "count": 3},
        {"category": "Uncategorized", "count": 1},
    ],
    # Ties at 0 votes: newer first (R7 2 h, R5 50 h, R6 500 h).
    "topVoted": ["R4", "R1", "R3", "R2", "R7", "R5", "R6"],
    "topVotes": [5, 4, 3, 1, 0, 0, 0],
    # Open requests with votes in 7 days: R3 3, R1 2, R2 1 (R4 is completed).
    "trending7d": [("R3", 3), ("R1", 2), ("R2", 1)],
    # (5*1-1)/10^1.4, (5*3-1)/100^1.4, (5*3-1)/1000^1.4, (5*0-1)/4^1.4
    "trendingDecay": [
        ("R2", 1, 0.159243),
        ("R3", 3, 0.022189),
        ("R1", 3, 0.000883),
        ("R7", 0, -0.143587),
    ],
    "approvalRatio": 0.8,  # accepted 4 (approved, in progress, 2 completed) of decided 5
    "rejectionRatio": 0.2,
    "medianHoursToCompletion": 36.0,
    "medianHoursToFirstAction": 4.0,
}


def load_dataset(url: str) -> dict[str, uuid.UUID]:
    """Write the board into the (empty) database at `url`; returns request ids by name."""
    voters = [make_user(url, credits=0) for _ in range(5)]
    admin = make_user(url, credits=0, admin=True)
    owner = make_user(url, credits=0)
    ids: dict[str, uuid.UUID] = {}
    with session_scope(url) as session:
        categories = {
            name: PoseCategory(id=uuid.uuid4(), name=name) for name in ("Standing", "Sitting")
        }
        session.add_all(categories.values())
        session.flush()
        for name, status, category, age, vote_ages, changes in REQUESTS:
            created = NOW - hours(age)
            request = PoseRequest(
                id=uuid.uuid4(),
                user_id=owner,
                pose_name=name,
                normalized_name=normalize_name(name),
                category_id=categories[category].id if category else None,
                votes_count=len(vote_ages),
                status=status,
                created_at=created,
                updated_at=created,
            )
            session.add(request)
            session.flush()
            ids[name] = request.id
            for voter, vote_age in zip(voters, vote_ages, strict=False):
                session.add(
                    PoseRequestVote(
                        request_id=request.id, user_id=voter, created_at=NOW - hours(vote_age)
                    )
                )
            previous = "pending"
            for to_status, after in changes:
                session.add(
                    PoseRequestStatusChange(
                        request_id=request.id,
                        from_status=previous,
                        to_status=to_status,
                        admin_id=admin,
                        created_at=created + hours(after),
                    )
                )
                previous = to_status
    return ids
