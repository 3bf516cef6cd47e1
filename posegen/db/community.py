"""SQLAlchemy models of the community side: pose library, pose requests, votes, history, stats.

Kept apart from posegen/db/models.py (same `Base`) so the request board can evolve without
touching the generation and credit tables.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from posegen.db.models import Base, utcnow


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"


# Requests still being decided or worked on: they take votes and count as duplicates.
OPEN_STATUSES = (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.IN_PROGRESS)
_OPEN_SQL = text("status IN ('pending', 'approved', 'in_progress')")

POSE_NAME_MAX = 100
DESCRIPTION_MAX = 500


class PoseCategory(Base):
    __tablename__ = "pose_categories"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoseLibraryItem(Base):
    """A finished pose users can pick; a completed request points at the one that answered it."""

    __tablename__ = "pose_library_items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(POSE_NAME_MAX))
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX), default=None)
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pose_categories.id"), index=True, default=None
    )
    image_key: Mapped[str | None] = mapped_column(String(512), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoseRequest(Base):
    """A user's request for a new pose. `votes_count` is kept equal to its vote rows."""

    __tablename__ = "pose_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    pose_name: Mapped[str] = mapped_column(String(POSE_NAME_MAX))
    # What duplicates are compared on (case, spacing and punctuation folded).
    normalized_name: Mapped[str] = mapped_column(String(POSE_NAME_MAX))
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX), default=None)
    reference_image_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pose_categories.id"), default=None
    )
    use_case: Mapped[str | None] = mapped_column(String(200), default=None)
    votes_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING)
    admin_notes: Mapped[str | None] = mapped_column(Text, default=None)
    completed_pose_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pose_library_items.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("votes_count >= 0", name="ck_pose_requests_votes_nonnegative"),
        Index("ix_pose_requests_status", "status"),
        Index("ix_pose_requests_user_status", "user_id", "status"),
        # "votes desc": a B-tree is read backwards just as fast, and autogenerate can compare it.
        Index("ix_pose_requests_votes", "votes_count"),
        # Race-safe duplicate prevention: one open request per user and normalized name.
        Index(
            "uq_pose_requests_open_name",
            "user_id",
            "normalized_name",
            unique=True,
            sqlite_where=_OPEN_SQL,
            postgresql_where=_OPEN_SQL,
        ),
    )


class PoseRequestVote(Base):
    """One user's vote on one request; the primary key is what makes it one."""

    __tablename__ = "pose_request_votes"

    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pose_requests.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Statistics count votes per request in recent windows.
    __table_args__ = (Index("ix_pose_request_votes_created", "created_at"),)


class PoseRequestStatusChange(Base):
    """History: who moved a request from which status to which, when, and why."""

    __tablename__ = "pose_request_status_changes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pose_requests.id", ondelete="CASCADE")
    )
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    admin_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_pose_request_status_changes_request", "request_id", "created_at"),)


class PoseRequestStatsSnapshot(Base):
    """One run of the `pose-request-stats` flow: the computed statistics as JSON."""

    __tablename__ = "pose_request_stats_snapshots"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stats: Mapped[dict[str, Any]] = mapped_column()
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
