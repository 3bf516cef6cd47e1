"""Exports in the database: what a run reads (plan, sources), what it records on the poses,
the ZIP's contents, and each user's default formats."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from posegen.db.models import ExportSettings, Generation, Pose, PoseStatus
from posegen.domain.background import pose_images
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import (
    ExportFormat,
    ExportSource,
    RenderedExport,
    resolve_formats,
    zip_entry_name,
)
from posegen.errors import NotFound, ValidationFailed
from posegen.storage import Storage

# -- what an export reads -----------------------------------------------------------------------


def export_source(session: Session, pose: Pose) -> ExportSource:
    images = pose_images(session, pose.id)
    changed = pose.background_changed and pose.background_key is not None
    return ExportSource(
        pose_id=pose.id,
        generation_id=pose.generation_id,
        image_key=pose.image_key,
        original_key=pose.original_image_key,
        mask_key=pose.mask_key or images.mask_key,
        mask_recorded=pose.mask_key is not None,
        background_key=pose.background_key if changed else None,
        background_prompt=pose.background_prompt if changed else None,
    )


@dataclass(frozen=True)
class ExportPlan:
    generation_id: uuid.UUID
    user_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    formats: tuple[str, ...]


def get_generation(session: Session, generation_id: uuid.UUID) -> Generation:
    generation = session.get(Generation, generation_id)
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def plan_export(session: Session, generation_id: uuid.UUID, request: ExportRequest) -> ExportPlan:
    """Which poses of the generation to export; poseIds outside it are refused, not skipped."""
    generation = get_generation(session, generation_id)
    ready = [pose.id for pose in generation.poses if pose.status != PoseStatus.PROCESSING]
    if request.pose_ids is None:
        chosen = ready
    else:
        known = {pose.id for pose in generation.poses}
        unknown = [str(pid) for pid in request.pose_ids if pid not in known]
        if unknown:
            raise ValidationFailed(
                "poseIds not in this generation: " + ", ".join(unknown), poseIds=unknown
            )
        chosen = list(dict.fromkeys(request.pose_ids))
    if not chosen:
        raise ValidationFailed("This generation has no poses ready to export.")
    return ExportPlan(generation.id, generation.user_id, tuple(chosen), tuple(request.formats))


def sources_for(session: Session, pose_ids: Sequence[uuid.UUID]) -> list[ExportSource]:
    poses = session.scalars(select(Pose).where(Pose.id.in_(pose_ids))).all()
    by_id = {pose.id: pose for pose in poses}
    return [export_source(session, by_id[pid]) for pid in pose_ids if pid in by_id]


# -- records on the pose --------------------------------------------------------------------------
# Bookkeeping writes keep `updated_at` as it was: it says when the pose's image changed, which is
# what the nightly export selects on; its own writes must not re-select the pose every night.


def record_mask(session: Session, pose_id: uuid.UUID, mask_key: str) -> None:
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id, Pose.mask_key.is_(None))
        .values(mask_key=mask_key, updated_at=Pose.updated_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def record_exports(session: Session, pose_id: uuid.UUID, keys: dict[str, str]) -> dict[str, str]:
    """Merge `{format: key}` into the pose's exportFormats; returns keys that were replaced by a
    key with another extension (their files are now orphans the caller may delete)."""
    pose = session.scalar(select(Pose).where(Pose.id == pose_id).with_for_update())
    if pose is None:
        raise NotFound("Pose not found")
    current = dict(pose.export_formats or {})
    replaced = {
        name: current[name]
        for name, key in keys.items()
        if name in current and current[name] != key
    }
    current.update(keys)
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id)
        .values(export_formats=current, updated_at=Pose.updated_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return replaced


def record_rendered(session: Session, storage: Storage, rendered: Sequence[RenderedExport]) -> None:
    """Record a run's files pose by pose; a file a new one replaced under another extension
    (a custom size that gained transparency: .jpg → .png) is deleted."""
    by_pose: dict[uuid.UUID, dict[str, str]] = {}
    for item in rendered:
        by_pose.setdefault(item.pose_id, {})[item.format] = item.key
    for pose_id, keys in by_pose.items():
        for stale in record_exports(session, pose_id, keys).values():
            storage.delete(stale)


@dataclass(frozen=True)
class MissingExports:
    pose_id: uuid.UUID
    formats: tuple[str, ...]


def zip_contents(
    generation: Generation, formats: Sequence[ExportFormat] | None
) -> tuple[list[tuple[str, str]], list[MissingExports]]:
    """(ZIP entry name, storage key) pairs, and per pose the requested formats not rendered yet.

    Without `formats`, every format each pose has is included and nothing is missing."""
    entries: list[tuple[str, str]] = []
    missing: list[MissingExports] = []
    for pose in generation.poses:
        recorded: dict[str, str] = dict(pose.export_formats or {})
        wanted = [fmt.name for fmt in formats] if formats is not None else sorted(recorded)
        absent = tuple(name for name in wanted if name not in recorded)
        if absent:
            missing.append(MissingExports(pose.id, absent))
        entries.extend(
            (zip_entry_name(pose.id, name, recorded[name]), recorded[name])
            for name in wanted
            if name in recorded
        )
    return entries, missing


def generation_zip_entries(session: Session, generation_id: uuid.UUID) -> list[tuple[str, str]]:
    """Every export the generation's poses have, for the generation's stored ZIP."""
    entries, _ = zip_contents(get_generation(session, generation_id), None)
    return entries


# -- per-user defaults ---------------------------------------------------------------------------


def get_default_formats(session: Session, user_id: uuid.UUID) -> list[str]:
    row = session.get(ExportSettings, user_id)
    return list(row.formats) if row is not None else []


def set_default_formats(session: Session, user_id: uuid.UUID, formats: list[str]) -> list[str]:
    names = [fmt.name for fmt in resolve_formats(formats)] if formats else []
    row = session.get(ExportSettings, user_id)
    if row is None:
        session.add(ExportSettings(user_id=user_id, formats=names))
    else:
        row.formats = names
    session.commit()
    return names
