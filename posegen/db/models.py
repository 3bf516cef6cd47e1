"""SQLAlchemy 2.0 models: users, projects, generations, poses, the append-only credit ledger,
export settings and the API's per-user rate limits."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Every stored time is UTC, but SQLite hands them back naive: say so explicitly."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Role(enum.StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class PoseStatus(enum.StrEnum):
    READY = "ready"
    PROCESSING = "processing"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    enterprise_unlimited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint("credits >= 0", name="ck_users_credits_nonnegative"),)


class Project(Base):
    """A seller's folder of generations (the seed's Phase 2 projects)."""

    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # RESTRICT: a project with generations cannot be deleted (the API answers 409 first).
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="RESTRICT"), index=True, default=None
    )
    status: Mapped[str] = mapped_column(String(16), default="completed")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    poses: Mapped[list[Pose]] = relationship(
        back_populates="generation", order_by="Pose.created_at", lazy="selectin"
    )


class Pose(Base):
    """A generated pose; `image_key` is the current image, `original_image_key` never changes."""

    __tablename__ = "generated_poses"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    generation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("generations.id"), index=True)
    original_image_key: Mapped[str] = mapped_column(String(512))
    image_key: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=PoseStatus.READY)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    background_changed: Mapped[bool] = mapped_column(Boolean, default=False)
    background_mode: Mapped[str | None] = mapped_column(String(32), default=None)
    background_prompt: Mapped[str | None] = mapped_column(Text, default=None)
    background_color: Mapped[str | None] = mapped_column(String(7), default=None)
    mask_key: Mapped[str | None] = mapped_column(String(512), default=None)
    background_key: Mapped[str | None] = mapped_column(String(512), default=None)
    export_formats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    change_request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    change_flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    change_started_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    generation: Mapped[Generation] = relationship(back_populates="poses")


class CreditTransaction(Base):
    """One ledger line. Balance = sum(amount) per user; refunds point at their charge, once."""

    __tablename__ = "credit_transactions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(128), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    refund_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("credit_transactions.id"), unique=True, default=None
    )
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_credit_transactions_user_created", "user_id", "created_at"),)


class ExportSettings(Base):
    """A user's default export formats: what the nightly export renders for their new poses."""

    __tablename__ = "user_export_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    formats: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RateLimit(Base):
    """One user's token bucket for one kind of request (posegen/api/rate_limit.py).

    In the database, not in process memory, so every API process draws from the same bucket.
    No foreign key to users: a leftover row of a deleted user is harmless, and the key check
    would lock the user's row (PostgreSQL takes a share lock) on every limited request.
    """

    __tablename__ = "rate_limits"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Unix time at which the bucket is full again; each request accepted moves it one interval on.
    refilled_at: Mapped[float] = mapped_column(Double)


class LoginLink(Base):
    """A one-time sign-in link for the web app; only the code's hash is kept.

    Used once (`used_at` set by a conditional UPDATE, so two clicks cannot both sign in) and
    only until `expires_at`.
    """

    __tablename__ = "web_login_links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A browser's signed-in session: the cookie holds a random secret, this row its hash.

    In the database rather than a signed cookie so sign-out ends it everywhere at once; the
    CSRF token every cookie-authenticated change must carry belongs to the session.
    """

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
