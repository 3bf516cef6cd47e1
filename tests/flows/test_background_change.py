"""The background-change flow under a real temporary Prefect server, for each mode and failure."""

from __future__ import annotations

import asyncio
import io
import uuid

import pytest
from PIL import Image

from posegen.db.models import CreditTransaction, Pose
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange
from posegen.domain.credits import balance, ledger_sum
from posegen.storage import get_storage

pytestmark = pytest.mark.usefixtures("prefect_api")


def run(fixture, change: BackgroundChange, request_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
    """Run the flow in this process against the session's Prefect server; returns its state."""
    from flows.background_change import background_change

    return asyncio.run(
        background_change(
            fixture.pose_id, fixture.user_id, request_id or uuid.uuid4(), change, return_state=True
        )
    )


def load_pose(fixture) -> Pose:  # type: ignore[no-untyped-def]
    with session_scope(fixture.db_url) as session:
        pose = session.get(Pose, fixture.pose_id)
        assert pose is not None
        session.expunge(pose)
        return pose


def ledger(fixture) -> list[CreditTransaction]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    with session_scope(fixture.db_url) as session:
        rows = session.scalars(
            select(CreditTransaction)
            .where(CreditTransaction.user_id == fixture.user_id)
            .order_by(CreditTransaction.created_at)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def balances(fixture) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with session_scope(fixture.db_url) as session:
        return balance(session, fixture.user_id), ledger_sum(session, fixture.user_id)


def test_solid_color_replaces_background_and_keeps_subject(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=100)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#00FF00")
    )
    assert state.is_completed(), state.message

    pose = load_pose(fixture)
    assert pose.status == "ready"
    assert pose.background_changed and pose.background_mode == "solid_color"
    assert pose.background_color == "#00FF00"
    assert pose.image_key == f"poses/{fixture.generation_id}/{fixture.pose_id}_bg.png"
    storage = get_storage()
    result = Image.open(io.BytesIO(storage.read_bytes(pose.image_key))).convert("RGB")
    original = Image.open(io.BytesIO(storage.read_bytes(pose.original_image_key))).convert("RGB")
    assert result.size == original.size
    # The top-right corner of the astronaut photo is background: now pure green.
    assert result.getpixel((result.width - 3, 3)) == (0, 255, 0)
    # The face (centre-left of the photo) is subject: unchanged up to mask softness.
    face = (int(result.width * 0.42), int(result.height * 0.3))
    kept, source = result.getpixel(face), original.getpixel(face)
    assert all(abs(a - b) <= 4 for a, b in zip(kept, source, strict=True)), (kept, source)
    assert balances(fixture) == (90, 90)
    assert [row.amount for row in ledger(fixture)] == [100, -10]


def test_rerun_with_same_request_id_charges_once(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=100)
    change = BackgroundChange(background_mode="solid_color", background_color="#112233")
    request_id = uuid.uuid4()
    assert (run(fixture, change, request_id)).is_completed()
    assert (run(fixture, change, request_id)).is_completed()
    assert balances(fixture) == (90, 90)


def test_unlimited_user_is_charged_nothing(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=0, unlimited=True)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#FFFFFF")
    )
    assert state.is_completed(), state.message
    assert balances(fixture) == (0, 0)


def test_insufficient_credits_fails_without_charge(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=5)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#FFFFFF")
    )
    assert state.is_failed()
    assert balances(fixture) == (5, 5)
    assert load_pose(fixture).status == "ready"


def test_a_slot_that_cannot_be_given_back_does_not_fail_a_done_change(  # type: ignore[no-untyped-def]
    pose_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pose was updated (and the user told) while the slot was being given back: a failed
    release must not fail the run and refund a change the user has. The lease frees the slot."""
    import prefect.concurrency._asyncio as slots
    from prefect.client.orchestration import get_client

    from posegen.orchestration import BACKGROUND_CHANGE_LIMIT

    released: list[uuid.UUID] = []

    async def unreachable(lease_id: uuid.UUID) -> None:
        released.append(lease_id)
        raise ConnectionError("the Prefect API went away")

    monkeypatch.setattr(slots, "arelease_concurrency_slots_with_lease", unreachable)
    fixture = pose_of(credits=100)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#00FF00")
    )

    assert released, "the release was never tried"
    assert state.is_completed(), state.message
    assert balances(fixture) == (90, 90)
    assert load_pose(fixture).background_changed

    async def free_the_slot() -> None:  # what the lease's expiry does; keep the limit clean
        async with get_client() as client:
            for lease_id in released:
                await client.release_concurrency_slots_with_lease(lease_id=lease_id)
            limit = await client.read_global_concurrency_limit_by_name(BACKGROUND_CHANGE_LIMIT)
            assert limit.active_slots == 0

    asyncio.run(free_the_slot())


def test_a_failed_render_still_gives_the_slot_back(  # type: ignore[no-untyped-def]
    pose_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from posegen.errors import PermanentError
    from posegen.imaging import pipeline
    from posegen.orchestration import BACKGROUND_CHANGE_LIMIT

    def broken(*args: object, **kwargs: object) -> str:
        raise PermanentError("The image could not be composited.")

    monkeypatch.setattr(pipeline, "composite_pose", broken)
    fixture = pose_of(credits=100)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#00FF00")
    )
    assert state.is_failed()
    assert balances(fixture) == (100, 100)

    async def active_slots() -> int:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(BACKGROUND_CHANGE_LIMIT)
            return limit.active_slots

    assert asyncio.run(active_slots()) == 0


@pytest.fixture
def real_services_env(
    pg_url: str, s3_endpoint: str, s3_storage_url: str, monkeypatch: pytest.MonkeyPatch
):  # type: ignore[no-untyped-def]
    """PostgreSQL for the app database and the S3 endpoint for storage."""
    from posegen.config import reset_settings
    from posegen.db.session import reset_engines
    from posegen.storage import reset_storage

    monkeypatch.setenv("POSEGEN_DATABASE_URL", pg_url)
    monkeypatch.setenv("POSEGEN_STORAGE_URL", s3_storage_url)
    monkeypatch.setenv("POSEGEN_S3_ENDPOINT_URL", s3_endpoint)
    for reset in (reset_settings, reset_engines, reset_storage):
        reset()
    yield pg_url
    monkeypatch.undo()
    for reset in (reset_settings, reset_engines, reset_storage):
        reset()


@pytest.mark.postgres
def test_flow_on_postgres_and_s3(real_services_env: str) -> None:
    from posegen.domain.poses import import_generation
    from tests.conftest import make_user
    from tests.flows.conftest import PoseFixture, astronaut_png

    url = real_services_env
    user_id = make_user(url, credits=20)
    storage = get_storage()
    assert not storage.is_local
    with session_scope(url) as session:
        generation = import_generation(session, storage, user_id, [astronaut_png(128)])
        fixture = PoseFixture(user_id, generation.id, generation.poses[0].id, url)
    state = run(
        fixture, BackgroundChange(background_mode="solid_color", background_color="#0000FF")
    )
    assert state.is_completed(), state.message
    pose = load_pose(fixture)
    result = Image.open(io.BytesIO(storage.read_bytes(pose.image_key))).convert("RGB")
    assert result.getpixel((result.width - 2, 2)) == (0, 0, 255)
    assert storage.client_url(pose.image_key).startswith("http")
    assert balances(fixture) == (10, 10)
