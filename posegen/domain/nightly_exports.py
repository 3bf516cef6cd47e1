"""The nightly export's selection: poses changed in a window, grouped by generation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from posegen.db.models import ExportSettings, Generation, Pose, PoseStatus


@dataclass(frozen=True)
class NightlyBatch:
    """One generation's poses changed in the window, in its owner's chosen formats."""

    generation_id: uuid.UUID
    user_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    formats: tuple[str, ...]


def changed_since(session: Session, since: datetime, until: datetime) -> list[NightlyBatch]:
    """Poses created or changed in [since, until) (creation sets `updated_at` too), grouped by
    generation, for users who chose nightly formats. Poses mid-change wait for the next night."""
    rows = session.execute(
        select(Pose.id, Pose.generation_id, Generation.user_id, ExportSettings.formats)
        .join(Generation, Pose.generation_id == Generation.id)
        .join(ExportSettings, ExportSettings.user_id == Generation.user_id)
        .where(
            Pose.updated_at >= since,
            Pose.updated_at < until,
            Pose.status != PoseStatus.PROCESSING,
        )
        .order_by(Generation.id, Pose.created_at)
    ).all()
    grouped: dict[uuid.UUID, tuple[uuid.UUID, list[uuid.UUID], list[str]]] = {}
    for pose_id, generation_id, user_id, formats in rows:
        if formats:
            grouped.setdefault(generation_id, (user_id, [], list(formats)))[1].append(pose_id)
    return [
        NightlyBatch(gid, uid, tuple(pids), tuple(formats))
        for gid, (uid, pids, formats) in grouped.items()
    ]
