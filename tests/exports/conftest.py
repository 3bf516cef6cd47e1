"""Export test fixtures: synthetic subjects with an exactly known box, and generations to export."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image, ImageDraw

from posegen.imaging.exporting import DecodedPose
from posegen.imaging.reframe import Box, subject_box
from tests.conftest import make_user

SUBJECT_RGB = (200, 30, 20)
BACKDROP_RGB = (225, 228, 232)


def synthetic_pose(
    size: tuple[int, int] = (600, 800), box: tuple[int, int, int, int] = (240, 120, 360, 700)
) -> DecodedPose:
    """A red rectangle (the subject, exactly `box`) on a plain backdrop, with its exact mask."""
    image = Image.new("RGB", size, BACKDROP_RGB)
    mask = Image.new("L", size, 0)
    # PIL rectangles include their right/bottom pixel; `box` is half-open like a bounding box.
    inclusive = (box[0], box[1], box[2] - 1, box[3] - 1)
    ImageDraw.Draw(image).rectangle(inclusive, fill=SUBJECT_RGB)
    ImageDraw.Draw(mask).rectangle(inclusive, fill=255)
    assert subject_box(mask) == Box(*map(float, box))
    return DecodedPose(image, mask, subject_box(mask))


def red_box(image: Image.Image) -> Box | None:
    """Where the red subject ended up in a rendered (possibly JPEG) image."""
    r, g, b = image.convert("RGB").split()
    red = Image.eval(r, lambda v: 255 if v > 140 else 0)
    not_green = Image.eval(g, lambda v: 255 if v < 90 else 0)
    not_blue = Image.eval(b, lambda v: 255 if v < 90 else 0)
    from PIL import ImageChops

    solid = ImageChops.multiply(ImageChops.multiply(red, not_green), not_blue)
    bbox = solid.getbbox()
    return Box(*map(float, bbox)) if bbox else None


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_pose(pose_id: uuid.UUID) -> Any:
    """The pose row as it is now, detached from its session."""
    from posegen.db.models import Pose
    from posegen.db.session import session_scope

    with session_scope() as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        session.expunge(pose)
        return pose


@dataclass(frozen=True)
class ExportFixture:
    user_id: uuid.UUID
    generation_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    db_url: str


@pytest.fixture
def generation_of(app_env: dict[str, str]) -> Callable[..., ExportFixture]:
    """Factory: a fresh user owning one generation whose poses are the given image bytes."""
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.storage import get_storage

    url = app_env["POSEGEN_DATABASE_URL"]

    def make(images: list[bytes], user_id: uuid.UUID | None = None) -> ExportFixture:
        owner = user_id or make_user(url, credits=0)
        get_storage().ensure_bucket()
        with session_scope(url) as session:
            generation = import_generation(session, get_storage(), owner, images)
            pose_ids = tuple(pose.id for pose in generation.poses)
            return ExportFixture(owner, generation.id, pose_ids, url)

    return make


def small_subject_png(offset: int = 0) -> bytes:
    """A small pose whose subject segmentation would be costly to wait for: tests that use it
    store its exact mask first (see `store_exact_mask`)."""
    return png(synthetic_pose((120, 160), (50 + offset, 30, 80 + offset, 140)).image)


def store_exact_mask(pose_id: uuid.UUID, offset: int = 0) -> None:
    """Give a pose made by `small_subject_png` its exact mask, as a background change would."""
    from posegen.db.session import session_scope
    from posegen.domain.background import pose_images
    from posegen.domain.export_records import record_mask
    from posegen.imaging.encoding import encode_png
    from posegen.storage import get_storage

    mask = synthetic_pose((120, 160), (50 + offset, 30, 80 + offset, 140)).mask
    with session_scope() as session:
        key = pose_images(session, pose_id).mask_key
        get_storage().write_bytes(key, encode_png(mask))
        record_mask(session, pose_id, key)


@pytest.fixture
def s3_env(
    app_env: dict[str, str], s3_endpoint: str, s3_storage_url: str, monkeypatch: pytest.MonkeyPatch
):  # type: ignore[no-untyped-def]
    """Storage on the S3 endpoint (moto), the app database as in `app_env`."""
    from tests.conftest import _reset_caches

    monkeypatch.setenv("POSEGEN_STORAGE_URL", s3_storage_url)
    monkeypatch.setenv("POSEGEN_S3_ENDPOINT_URL", s3_endpoint)
    _reset_caches()
    yield s3_storage_url
    monkeypatch.delenv("POSEGEN_S3_ENDPOINT_URL")
    monkeypatch.setenv("POSEGEN_STORAGE_URL", app_env["POSEGEN_STORAGE_URL"])
    _reset_caches()


@pytest.fixture(params=["local", "s3"])
def any_storage(request: pytest.FixtureRequest, app_env: dict[str, str]) -> str:
    """Run a test once on local storage and once on the S3 endpoint."""
    if request.param == "s3":
        return request.getfixturevalue("s3_env")
    return app_env["POSEGEN_STORAGE_URL"]


# The API fixtures (app client, accounts with tokens) are shared with tests/api.
from tests.api.conftest import (  # noqa: E402, F401
    account,
    client,
    db_url,
    new_account,
    prefect_unreachable,
)
