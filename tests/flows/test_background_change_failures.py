"""Failure paths of the background-change flow: FLUX errors over real HTTP, refunds, events."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from posegen.config import reset_settings
from posegen.domain.background import BackgroundChange
from posegen.events import EVENT_BACKGROUND_COMPLETED, EVENT_BACKGROUND_FAILED
from posegen.storage import get_storage
from tests.events import wait_for_events
from tests.flows.conftest import assert_nothing_lost, with_an_export
from tests.flows.test_background_change import balances, ledger, load_pose, run

AI = BackgroundChange(background_mode="ai_generate", background_prompt="a sunny beach at noon")


@pytest.fixture
def flux_env(fake_bfl, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    reset_settings()
    yield fake_bfl
    reset_settings()


def assert_refunded_once(fixture, opening: int = 100) -> None:  # type: ignore[no-untyped-def]
    rows = ledger(fixture)
    assert [row.amount for row in rows] == [opening, -10, 10]
    assert rows[2].refund_of == rows[1].id
    assert balances(fixture) == (opening, opening)


def test_ai_generate_composites_flux_image(pose_of, flux_env, prefect_api: str) -> None:  # type: ignore[no-untyped-def]
    flux_env.scenario = "pending_then_ready"
    fixture = pose_of()
    state = run(fixture, AI)
    assert state.is_completed(), state.message
    pose = load_pose(fixture)
    assert pose.background_mode == "ai_generate"
    assert pose.background_prompt == "a sunny beach at noon"
    submits = flux_env.requests_to("/v1/flux-pro-1.1", method="POST")
    assert len(submits) == 1
    sent = submits[0].json
    assert "no people" in sent["prompt"].lower() and "sunny beach" in sent["prompt"]
    assert sent["width"] % 32 == 0 and sent["height"] % 32 == 0
    assert len(flux_env.requests_to("/v1/get_result")) >= 2  # it polled until Ready
    assert balances(fixture) == (90, 90)
    events = wait_for_events(
        prefect_api, EVENT_BACKGROUND_COMPLETED, f"posegen.pose.{fixture.pose_id}"
    )
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["imageUrl"].endswith(f"{fixture.pose_id}_bg.png")
    related = {r["prefect.resource.id"] for r in events[0]["related"]}
    assert f"posegen.user.{fixture.user_id}" in related


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("content_moderated", "safety filter"),
        ("request_moderated", "safety filter"),
        ("error", "FLUX could not generate the image"),
        ("task_not_found", "FLUX could not generate the image"),
    ],
)
def test_permanent_flux_failure_fails_at_once_and_refunds_once(  # type: ignore[no-untyped-def]
    pose_of, flux_env, prefect_api: str, scenario: str, message: str
) -> None:
    flux_env.scenario = scenario
    fixture = pose_of()
    formats = with_an_export(fixture)
    state = run(fixture, AI)
    assert state.is_failed()
    assert len(flux_env.requests_to("/v1/flux-pro-1.1", method="POST")) == 1  # no retry
    assert_refunded_once(fixture)
    pose = load_pose(fixture)
    assert message in (pose.error_message or "")
    assert "refunded" in (pose.error_message or "")
    assert_nothing_lost(fixture, formats)
    events = wait_for_events(
        prefect_api, EVENT_BACKGROUND_FAILED, f"posegen.pose.{fixture.pose_id}"
    )
    assert len(events) == 1
    assert events[0]["payload"]["errorMessage"] == pose.error_message
    assert events[0]["payload"]["creditRefunded"] == 10


@pytest.mark.parametrize("status", [429, 500])
def test_transient_flux_failure_is_retried_then_succeeds(  # type: ignore[no-untyped-def]
    pose_of, flux_env, status: int
) -> None:
    flux_env.fail_first(2, status=status)
    fixture = pose_of()
    state = run(fixture, AI)
    assert state.is_completed(), state.message
    assert len(flux_env.requests_to("/v1/flux-pro-1.1", method="POST")) == 3
    assert balances(fixture) == (90, 90)
    assert [row.amount for row in ledger(fixture)] == [100, -10]


def test_flux_always_failing_is_retried_three_times_then_refunded(pose_of, flux_env) -> None:  # type: ignore[no-untyped-def]
    flux_env.scenario = "server_error"
    fixture = pose_of()
    formats = with_an_export(fixture)
    state = run(fixture, AI)
    assert state.is_failed()
    assert len(flux_env.requests_to("/v1/flux-pro-1.1", method="POST")) == 3
    assert_refunded_once(fixture)
    assert_nothing_lost(fixture, formats)
    # Running the hook's work again (a second failure report, the reconciler) refunds nothing more.
    from posegen.db.session import session_scope
    from posegen.domain.background import fail_change

    pose = load_pose(fixture)
    with session_scope(fixture.db_url) as session:
        assert (
            fail_change(session, fixture.pose_id, pose.change_request_id, "again").created is False
        )
    assert_refunded_once(fixture)


def test_upload_mode_uses_the_uploaded_image(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of()
    storage = get_storage()
    backdrop = Image.new("RGB", (64, 48), (200, 30, 40))
    buf = io.BytesIO()
    backdrop.save(buf, format="PNG")
    key = f"uploads/{fixture.user_id}/backdrop.png"
    storage.write_bytes(key, buf.getvalue())
    state = run(fixture, BackgroundChange(background_mode="upload", background_image_url=key))
    assert state.is_completed(), state.message
    result = Image.open(io.BytesIO(storage.read_bytes(load_pose(fixture).image_key))).convert("RGB")
    assert result.getpixel((result.width - 3, 3)) == (200, 30, 40)


def test_missing_upload_fails_with_clear_message_and_refund(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of()
    formats = with_an_export(fixture)
    key = f"uploads/{fixture.user_id}/missing.png"
    state = run(fixture, BackgroundChange(background_mode="upload", background_image_url=key))
    assert state.is_failed()
    assert_refunded_once(fixture)
    assert "not found" in (load_pose(fixture).error_message or "").lower()
    assert_nothing_lost(fixture, formats)
