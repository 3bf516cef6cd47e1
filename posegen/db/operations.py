"""SQLAlchemy models of operations: how each background change ended, and each alert's state.

Both are written where the thing happens (a flow-run process, a hook, the reconciler, the
alerts flow) and read by every API process and the alerts flow, so the figures operators
alert on are the same whichever process answers.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Double, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from posegen.db.models import Base, utcnow


class BackgroundChangeOutcome(Base):
    """One finished background change (keyed by its request, so it is recorded once).

    `duration_seconds` runs from the charge (when the user asked) to the end: what they waited.
    Append-only, so counts over it are Prometheus counters that never go down.
    """

    __tablename__ = "background_change_outcomes"

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    pose_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    outcome: Mapped[str] = mapped_column(String(16))  # "completed" | "failed"
    duration_seconds: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_background_change_outcomes_finished_at", "finished_at"),)


class AlertState(Base):
    """Whether an alert is triggered now: the alerts flow emits an event only when this flips."""

    __tablename__ = "ops_alert_states"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    triggered: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[float] = mapped_column(Double, default=0.0)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
