"""Generations and poses: ownership-checked lookups and imports of new pose images."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from posegen.db.models import Generation, Pose, User
from posegen.errors import NotFound
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_png
from posegen.storage import Storage


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No user with email {email}")
    return user


def get_owned_pose(session: Session, user_id: uuid.UUID, pose_id: uuid.UUID) -> Pose:
    """The pose if it belongs to the user; otherwise NotFound, never saying which case it was."""
    pose = session.scalar(
        select(Pose)
        .join(Generation, Pose.generation_id == Generation.id)
        .where(Pose.id == pose_id, Generation.user_id == user_id)
    )
    if pose is None:
        raise NotFound("Pose not found")
    return pose


def get_owned_generation(
    session: Session, user_id: uuid.UUID, generation_id: uuid.UUID
) -> Generation:
    generation = session.scalar(
        select(Generation).where(Generation.id == generation_id, Generation.user_id == user_id)
    )
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def get_pose(session: Session, pose_id: uuid.UUID) -> Pose:
    pose = session.get(Pose, pose_id)
    if pose is None:
        raise NotFound("Pose not found")
    return pose


def owner_of_key(session: Session, key: str) -> uuid.UUID | None:
    """Which user may download a storage key: the generation's owner or the uploader."""
    parts = key.split("/")
    if len(parts) < 3:
        return None
    try:
        ident = uuid.UUID(parts[1])
    except ValueError:
        return None
    if parts[0] == "uploads":
        return ident
    if parts[0] in ("poses", "exports"):
        return session.scalar(select(Generation.user_id).where(Generation.id == ident))
    return None


@dataclass(frozen=True)
class GenerationSummary:
    """A row of the generations list: what a thumbnail grid needs, without loading every pose."""

    generation: Generation
    pose_count: int
    cover_key: str | None


def list_generations(
    session: Session,
    user_id: uuid.UUID,
    *,
    offset: int,
    limit: int,
    project_id: uuid.UUID | None = None,
) -> tuple[list[GenerationSummary], int]:
    """The user's generations (of one project, if given), newest first, each with its pose
    count and first pose's image."""
    owned = [Generation.user_id == user_id]
    if project_id is not None:
        owned.append(Generation.project_id == project_id)
    total = session.scalar(select(func.count()).select_from(Generation).where(*owned))
    counts = (
        select(Pose.generation_id, func.count().label("n")).group_by(Pose.generation_id).subquery()
    )
    rows = session.execute(
        select(Generation, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.generation_id == Generation.id)
        .where(*owned)
        .order_by(Generation.created_at.desc(), Generation.id)
        .offset(offset)
        .limit(limit)
    ).all()
    summaries = []
    for generation, count in rows:
        first = generation.poses[0] if generation.poses else None
        summaries.append(GenerationSummary(generation, int(count), first and first.image_key))
    return summaries, int(total or 0)


def create_generation(
    session: Session, user_id: uuid.UUID, *, project_id: uuid.UUID | None = None
) -> Generation:
    """An empty generation that photos are then added to one at a time (the web app's upload)."""
    generation = Generation(user_id=user_id, project_id=project_id)
    session.add(generation)
    session.commit()
    session.refresh(generation)
    return generation


def add_pose(session: Session, storage: Storage, generation: Generation, data: bytes) -> Pose:
    """Decode one photo (refused if bad, before anything is written), store it, record a pose."""
    image = open_image(data)
    pose = _store_pose(storage, generation.id, image)
    session.add(pose)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete(pose.image_key)
        raise
    session.refresh(pose)
    return pose


def import_generation(
    session: Session,
    storage: Storage,
    user_id: uuid.UUID,
    images: list[bytes],
    *,
    project_id: uuid.UUID | None = None,
) -> Generation:
    """Create a generation whose poses are the given images, stored as PNG under poses/{id}/.

    Every image is decoded (and refused if bad) before anything is written, so a bad file
    leaves no generation and no stored files behind.
    """
    decoded = [open_image(data) for data in images]
    generation = Generation(user_id=user_id, project_id=project_id)
    session.add(generation)
    session.flush()
    written: list[str] = []
    try:
        for image in decoded:
            pose = _store_pose(storage, generation.id, image)
            written.append(pose.image_key)
            session.add(pose)
        session.commit()
    except BaseException:
        session.rollback()
        for key in written:
            storage.delete(key)
        raise
    session.refresh(generation)
    return generation


def _store_pose(storage: Storage, generation_id: uuid.UUID, image: Image.Image) -> Pose:
    """Write the photo as PNG under poses/{generationId}/ and the (unsaved) pose naming it."""
    pose_id = uuid.uuid4()
    key = f"poses/{generation_id}/{pose_id}.png"
    storage.write_bytes(key, encode_png(image), content_type="image/png")
    return Pose(
        id=pose_id,
        generation_id=generation_id,
        original_image_key=key,
        image_key=key,
        width=image.width,
        height=image.height,
    )
