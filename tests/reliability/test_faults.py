"""Faults during a background change on PostgreSQL + S3: each ends completed or refunded once.

FLUX answering 500/429 or moderating is covered in tests/flows/test_background_change_failures.py
and the Prefect API being down at submission in tests/api/test_poses.py; this module adds what
they cannot show: FLUX hanging past the client timeout, an upload cut off mid-write, database
connections killed under a running flow, the runner SIGKILLed and a run cancelled in Prefect.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.states import Cancelling, State
from sqlalchemy.orm import Session

import flows.background_change as flow_module
from posegen.api.app import create_app
from posegen.api.paths import BASE_PATH
from posegen.auth import create_token
from posegen.config import reset_settings
from posegen.domain import background as domain
from posegen.domain.background import BackgroundChange
from posegen.storage import get_storage, reset_storage
from tests.reliability.conftest import (
    Owner,
    Runner,
    Terminator,
    assert_invariant,
    books,
    load_pose,
    reconcile,
    run_state,
    wait_for_run,
)
from tests.reliability.faulty_s3 import FaultyS3Proxy, faulty_s3

SOLID = BackgroundChange(background_mode="solid_color", background_color="#FF8800")
AI = BackgroundChange(background_mode="ai_generate", background_prompt="a quiet studio backdrop")
COST = 10


def run_flow(owner: Owner, change: BackgroundChange) -> State[Any]:
    """The background-change flow in this process (the charge is the flow's own)."""
    from flows.background_change import background_change

    return asyncio.run(
        background_change(owner.pose_id, owner.user_id, uuid.uuid4(), change, return_state=True)
    )


def assert_refunded_once(owner: Owner) -> None:
    state = assert_invariant(owner)
    assert [row.amount for row in state.charges] == [-COST]
    assert len(state.refunds) == 1 and state.refunds[0].refund_of == state.charges[0].id
    assert state.balance == owner.opening


def assert_charged_once(owner: Owner) -> None:
    state = assert_invariant(owner)
    assert [row.amount for row in state.charges] == [-COST] and not state.refunds
    assert state.balance == owner.opening - COST


@pytest.fixture
def flux(fake_bfl, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The fake FLUX server configured for this process and for runners started afterwards."""
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    reset_settings()
    yield fake_bfl
    reset_settings()


# -- FLUX ------------------------------------------------------------------------------------


def test_flux_hanging_past_the_timeout_is_retried_then_refunded_once(
    owner_of: Callable[..., Owner], flux, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSEGEN_FLUX_TIMEOUT", "0.5")
    reset_settings()
    flux.hang_seconds = 1.5
    owner = owner_of()
    started = time.monotonic()
    state = run_flow(owner, AI)
    print(f"\nFLUX hanging: {time.monotonic() - started:.1f} s to fail and refund")
    assert state.is_failed()
    assert len(flux.requests_to("/v1/flux-pro-1.1", method="POST")) == 3  # 3 attempts
    assert_refunded_once(owner)
    pose = load_pose(owner)
    assert pose.status == "failed" and "refunded" in (pose.error_message or "")
    assert pose.image_key == pose.original_image_key


# -- storage ---------------------------------------------------------------------------------


@pytest.fixture
def s3_proxy(
    pg_s3_env: dict[str, str], s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultyS3Proxy]:
    """posegen's storage talking to moto through the faulty proxy."""
    with faulty_s3(s3_endpoint) as proxy:
        monkeypatch.setenv("POSEGEN_S3_ENDPOINT_URL", proxy.url)
        reset_settings()
        reset_storage()
        yield proxy
    reset_settings()
    reset_storage()


def test_upload_cut_off_mid_write_refunds_once_and_leaves_no_object(
    owner_of: Callable[..., Owner], s3_proxy: FaultyS3Proxy, prefect_api: str
) -> None:
    owner = owner_of()
    output_key = f"poses/{owner.generation_id}/{owner.pose_id}_bg.png"
    s3_proxy.drop_puts_containing = "_bg.png"  # the composite step's write
    state = run_flow(owner, SOLID)

    assert state.is_failed()
    # Each task attempt tries the PUT (botocore retries once more): all were cut off.
    assert len(s3_proxy.dropped) >= 3, s3_proxy.dropped
    assert_refunded_once(owner)
    pose = load_pose(owner)
    assert pose.status == "failed" and "refunded" in (pose.error_message or "")
    assert pose.image_key == pose.original_image_key and not pose.background_changed
    s3_proxy.drop_puts_containing = None
    storage = get_storage()
    assert not storage.exists(output_key)  # moto threw the half upload away
    assert storage.exists(f"poses/{owner.generation_id}/{owner.pose_id}_background.png")


# -- PostgreSQL ------------------------------------------------------------------------------


def _kill_own_connection_first(
    real: Callable[..., Any], terminator: Terminator, calls: list[int]
) -> Callable[..., Any]:
    """Wrap a domain call so that, the first time, its session's backend is killed just
    before it runs: the connection is checked out and dies under the call's first statement."""

    def wrapper(session: Session, *args: Any, **kwargs: Any) -> Any:
        if not calls:
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            assert isinstance(pid, int) and terminator.kill(pid)
            calls.append(pid)
        return real(session, *args, **kwargs)

    return wrapper


@pytest.mark.parametrize("step", ["start_change", "pose_images", "complete_change"])
def test_db_connection_killed_under_a_task_is_retried_and_charged_once(
    owner_of: Callable[..., Owner],
    terminator: Terminator,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    step: str,
) -> None:
    """render-change (finding the charge, loading the pose) and update-pose each lose their
    connection once."""
    owner = owner_of()
    killed: list[int] = []
    monkeypatch.setattr(
        domain, step, _kill_own_connection_first(getattr(domain, step), terminator, killed)
    )
    state = run_flow(owner, SOLID)
    assert killed, "the fault never fired"
    assert state.is_completed(), state.message
    assert_charged_once(owner)
    pose = load_pose(owner)
    assert pose.status == "ready" and pose.background_changed


def test_db_connection_killed_in_the_refund_hook_is_refunded_by_the_reconciler(
    owner_of: Callable[..., Owner],
    terminator: Terminator,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
) -> None:
    """The failure hook cannot refund (its connection dies): the run is Failed, so the
    reconciler's next pass refunds — once, however often it runs."""
    owner = owner_of()
    killed: list[int] = []
    monkeypatch.setattr(
        flow_module,
        "fail_change",
        _kill_own_connection_first(domain.fail_change, terminator, killed),
    )
    missing = BackgroundChange(
        background_mode="upload", background_image_url=f"uploads/{owner.user_id}/gone.png"
    )
    state = run_flow(owner, missing)
    assert killed and state.is_failed()
    assert_invariant(owner)
    assert not books(owner).refunds  # the hook's refund died with its connection

    refunded = [r for r in reconcile() if r["userId"] == str(owner.user_id)]
    assert len(refunded) == 1 and refunded[0]["reason"] == "its flow run ended failed"
    assert_refunded_once(owner)
    assert not [r for r in reconcile() if r["userId"] == str(owner.user_id)]
    assert load_pose(owner).status == "failed"


# -- the runner ------------------------------------------------------------------------------


def _submit_through_the_api(owner: Owner, body: dict[str, str]) -> uuid.UUID:
    headers = {"Authorization": f"Bearer {create_token(owner.user_id, 'USER')}"}
    with TestClient(create_app()) as client:
        response = client.post(
            f"{BASE_PATH}/poses/{owner.pose_id}/background", json=body, headers=headers
        )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["flowRunId"])


def _wait_until_polling(flux, run_id: uuid.UUID, runner: Runner, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    """Until the run is mid-change: submitted to FLUX and polling for the image."""
    deadline = time.monotonic() + timeout
    while len(flux.requests_to("/v1/get_result")) < 3:
        assert time.monotonic() < deadline, f"run {run_id} never polled\n{runner.log_tail()}"
        assert run_state(run_id) not in {"FAILED", "CRASHED", "COMPLETED"}, runner.log_tail()
        time.sleep(0.3)


AI_BODY = {"backgroundMode": "ai_generate", "backgroundPrompt": "a quiet studio backdrop"}


@pytest.mark.slow
def test_runner_killed_mid_change_is_refunded_by_the_reconciler(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner], flux
) -> None:  # type: ignore[no-untyped-def]
    flux.scenario = "pending_then_ready"
    flux.pending_polls = 1_000_000  # the change stays in FLUX polling until killed
    owner = owner_of()
    runner = runner_of()
    runner.start()
    run_id = _submit_through_the_api(owner, AI_BODY)
    _wait_until_polling(flux, run_id, runner)

    runner.kill_everything()
    assert run_state(run_id) == "RUNNING"  # nobody is left to say otherwise
    assert books(owner).balance == owner.opening - COST
    refunded = [r for r in reconcile(running_timeout_minutes=0) if r["flowRunId"] == str(run_id)]

    assert len(refunded) == 1 and refunded[0]["reason"] == "its flow run stopped responding"
    assert run_state(run_id) == "CRASHED"
    assert_refunded_once(owner)
    pose = load_pose(owner)
    assert pose.status == "failed" and "refunded" in (pose.error_message or "")
    assert not [r for r in reconcile(running_timeout_minutes=0) if r["flowRunId"] == str(run_id)]


@pytest.mark.slow
def test_run_cancelled_in_prefect_is_refunded_once(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner], flux
) -> None:  # type: ignore[no-untyped-def]
    """Cancelling through the Prefect API: the runner kills the run's process and runs the
    flow's on_cancellation hook, which refunds; the reconciler then finds nothing to do."""
    flux.scenario = "pending_then_ready"
    flux.pending_polls = 1_000_000
    owner = owner_of()
    runner = runner_of()
    runner.start()
    run_id = _submit_through_the_api(owner, AI_BODY)
    _wait_until_polling(flux, run_id, runner)

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Cancelling())

    started = time.monotonic()
    asyncio.run(cancel())
    assert wait_for_run(run_id, {"CANCELLED"}, timeout=60) == "CANCELLED", runner.log_tail()
    deadline = time.monotonic() + 30
    while not books(owner).refunds and time.monotonic() < deadline:
        time.sleep(0.3)
    print(f"\ncancelled and refunded in {time.monotonic() - started:.1f} s")
    assert books(owner).refunds, f"no refund from the cancellation hook\n{runner.log_tail()}"
    pose = load_pose(owner)
    assert pose.status == "failed"
    assert pose.error_message == (
        "The background change was cancelled; your credits were refunded."
    )  # the hook's message: the reconciler's would say the worker stopped
    assert not [r for r in reconcile(grace_minutes=0) if r["flowRunId"] == str(run_id)]
    assert_refunded_once(owner)
