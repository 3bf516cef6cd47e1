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
