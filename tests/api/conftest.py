"""API test fixtures: an app on the per-test SQLite database and storage, users with tokens,
and generations holding one real pose image."""

from __future__ import annotations

import io
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from posegen.api.app import create_app
from posegen.auth import create_token
from posegen.db.models import CreditTransaction, Pose
from posegen.db.session import session_scope
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tests.conftest import make_user

BASE = "/api/apps/pose-generator"


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Generated:
    generation_id: uuid.UUID
    pose_id: uuid.UUID
    image_key: str


@pytest.fixture
def client(app_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def db_url(app_env: dict[str, str]) -> str:
    return app_env["POSEGEN_DATABASE_URL"]


@pytest.fixture
def new_account(db_url: str) -> Callable[..., Account]:
    def make(*, credits: int = 100, unlimited: bool = False, admin: bool = False) -> Account:
        user_id = make_user(db_url, credits=credits, unlimited=unlimited, admin=admin)
        return Account(user_id, create_token(user_id, "ADMIN" if admin else "USER"))

    return make


@pytest.fixture
def account(new_account: Callable[..., Account]) -> Account:
    return new_account()


@pytest.fixture
def new_generation(db_url: str) -> Callable[[Account], Generated]:
    def make(owner: Account) -> Generated:
        with session_scope(db_url) as session:
            generation = import_generation(session, get_storage(), owner.id, [png_bytes()])
            pose = generation.poses[0]
            return Generated(generation.id, pose.id, pose.image_key)

    return make


@pytest.fixture
def generated(account: Account, new_generation: Callable[[Account], Generated]) -> Generated:
    return new_generation(account)


@pytest.fixture(scope="session")
def background_deployment(prefect_api: str) -> str:
    """The `background-change/background-change` deployment, registered as `serve` would.

    No runner serves it here, so accepted runs stay Scheduled: tests that use it check what the
    API submits, not what the flow does.
    """
    from flows.background_change import background_change

    background_change.to_deployment(name="background-change").apply()
    return prefect_api


@pytest.fixture
def prefect_unreachable() -> Iterator[None]:
    """The Prefect API URL pointing at a loopback port nothing listens on.

    A settings context, not an environment variable: once the session's Prefect test server
    runs, its settings context wins over the environment.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        yield


def png_bytes(size: tuple[int, int] = (96, 128), colour: str = "#3366CC") -> bytes:
    """A small person-like figure on a plain background: a real, decodable pose image."""
    image = Image.new("RGB", size, "#EEEEEE")
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((width * 0.4, height * 0.1, width * 0.6, height * 0.25), fill=colour)
    draw.rectangle((width * 0.35, height * 0.27, width * 0.65, height * 0.9), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def balance(db_url: str, user_id: uuid.UUID) -> int:
    from posegen.domain.credits import balance as read_balance

    with session_scope(db_url) as session:
        return read_balance(session, user_id)


def ledger(db_url: str, user_id: uuid.UUID) -> list[tuple[int, str]]:
    """The user's ledger lines after the opening grant, oldest first, as (amount, reason)."""
    from sqlalchemy import select

    with session_scope(db_url) as session:
        rows = session.execute(
            select(CreditTransaction.amount, CreditTransaction.reason)
            .where(CreditTransaction.user_id == user_id, CreditTransaction.reason != "opening")
            .order_by(CreditTransaction.created_at)
        ).all()
        return [(amount, reason) for amount, reason in rows]


def pose_status(db_url: str, pose_id: uuid.UUID) -> str:
    with session_scope(db_url) as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        return pose.status


def assert_pose_untouched(db_url: str, pose_id: uuid.UUID) -> None:
    """A refused change left the pose as it was: ready, its own image, nothing recorded, no
    `_bg.png` written (a status check alone would miss a half-applied change)."""
    from posegen.storage import get_storage

    with session_scope(db_url) as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        assert pose.status == "ready"
        assert pose.image_key == pose.original_image_key
        assert not pose.background_changed and pose.background_mode is None
        assert pose.change_request_id is None
        output = f"poses/{pose.generation_id}/{pose.id}_bg.png"
    assert not get_storage().exists(output)
