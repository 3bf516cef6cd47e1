"""Fixtures for flow tests: a user owning a generation with one real photo of a person."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

import pytest
from PIL import Image

from tests.conftest import make_user


def astronaut_png(size: int = 256) -> bytes:
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class PoseFixture:
    user_id: uuid.UUID
    generation_id: uuid.UUID
    pose_id: uuid.UUID
    db_url: str


@pytest.fixture
def pose_of(app_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Factory: a fresh user (with given credits) owning one astronaut pose."""
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.storage import get_storage

    url = app_env["POSEGEN_DATABASE_URL"]

    def make(credits: int = 100, unlimited: bool = False) -> PoseFixture:
        user_id = make_user(url, credits=credits, unlimited=unlimited)
        with session_scope(url) as session:
            generation = import_generation(session, get_storage(), user_id, [astronaut_png()])
            return PoseFixture(user_id, generation.id, generation.poses[0].id, url)

    return make


def with_an_export(fixture: PoseFixture) -> dict[str, str]:
    """Give the pose an earlier export (a file and its `exportFormats` entry), as a seller's
    pose has after exporting: a failed change must leave both as they were."""
    from posegen.db.models import Pose
    from posegen.db.session import session_scope
    from posegen.storage import get_storage

    key = f"exports/{fixture.generation_id}/{fixture.pose_id}/instagram_feed.png"
    get_storage().write_bytes(key, astronaut_png(32))
    formats = {"instagram_feed": key}
    with session_scope(fixture.db_url) as session:
        pose = session.get(Pose, fixture.pose_id)
        assert pose is not None
        pose.export_formats = formats
    return formats


def assert_nothing_lost(fixture: PoseFixture, formats: dict[str, str]) -> None:
    """After a failed change: the pose says failed and keeps its image and exports, no `_bg.png`
    or ZIP appeared, and the kept files are still in storage."""
    from posegen.db.models import Pose
    from posegen.db.session import session_scope
    from posegen.storage import get_storage

    with session_scope(fixture.db_url) as session:
        pose = session.get(Pose, fixture.pose_id)
        assert pose is not None
        assert pose.status == "failed"
        assert pose.image_key == pose.original_image_key
        assert not pose.background_changed and pose.background_mode is None
        assert pose.export_formats == formats
        kept = [pose.image_key, *formats.values()]
    storage = get_storage()
    assert all(storage.exists(key) for key in kept), kept
    generation = fixture.generation_id
    assert not storage.exists(f"poses/{generation}/{fixture.pose_id}_bg.png")
    assert not storage.exists(f"exports/{generation}/poses-{generation}.zip")
