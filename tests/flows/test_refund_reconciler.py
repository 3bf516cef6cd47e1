"""The refund reconciler against the real Prefect server: dead runs' charges are refunded once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Cancelled, Completed, Crashed, Running

from posegen.db.models import Pose, User
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange, record_flow_run, start_change
from tests.flows.test_background_change import balances, ledger, load_pose

pytestmark = pytest.mark.usefixtures("prefect_api")
CHANGE = BackgroundChange(background_mode="solid_color", background_color="#123456")


def charge_like_the_api(fixture, run_state=None) -> uuid.UUID | None:  # type: ignore[no-untyped-def]
    """Claim + charge as the API does, and (optionally) a flow run left in `run_state`."""
    with session_scope(fixture.db_url) as session:
        user = session.get(User, fixture.user_id)
        ticket = start_change(session, user, fixture.pose_id, uuid.uuid4(), CHANGE)
    if run_state is None:
        return None

    async def make_run() -> uuid.UUID:
        from flows.background_change import background_change

        async with get_client() as client:
            run = await client.create_flow_run(
                background_change, parameters={"pose_id": str(fixture.pose_id)}
            )
            await client.set_flow_run_state(run.id, run_state, force=True)
            return run.id

    run_id = asyncio.run(make_run())
    with session_scope(fixture.db_url) as session:
        record_flow_run(session, ticket, run_id)
    return run_id


def reconcile(grace_minutes: float = 10.0, running_timeout: float = 30.0) -> list[dict]:  # type: ignore[type-arg]
    from flows.refund_reconciler import refund_reconciler

    return asyncio.run(
        refund_reconciler(grace_minutes=grace_minutes, running_timeout_minutes=running_timeout)
    )


@pytest.mark.parametrize("dead", [Crashed, Cancelled], ids=["crashed", "cancelled"])
def test_charge_of_a_dead_run_is_refunded_once(pose_of, dead) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=50)
    run_id = charge_like_the_api(fixture, dead())
    assert balances(fixture) == (40, 40)

    refunded = [r for r in reconcile() if r["poseId"] == str(fixture.pose_id)]
    assert len(refunded) == 1 and refunded[0]["flowRunId"] == str(run_id)
    assert refunded[0]["credits"] == 10
    assert balances(fixture) == (50, 50)
    rows = ledger(fixture)
    assert [r.amount for r in rows] == [50, -10, 10]
    assert rows[2].flow_run_id == run_id
    pose = load_pose(fixture)
    assert pose.status == "failed" and "refunded" in (pose.error_message or "")

    assert [r for r in reconcile() if r["poseId"] == str(fixture.pose_id)] == []
    assert balances(fixture) == (50, 50)


def test_running_and_completed_runs_are_left_alone(pose_of) -> None:  # type: ignore[no-untyped-def]
    running, completed = pose_of(credits=50), pose_of(credits=50)
    charge_like_the_api(running, Running())
    charge_like_the_api(completed, Completed())
    with session_scope(completed.db_url) as session:
        session.get(Pose, completed.pose_id).status = "ready"  # the change finished
    touched = {r["poseId"] for r in reconcile(grace_minutes=0)}
    assert str(running.pose_id) not in touched and str(completed.pose_id) not in touched
    assert balances(running) == (40, 40) and balances(completed) == (40, 40)


def test_charge_without_a_run_is_refunded_after_the_grace_period(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=50)
    charge_like_the_api(fixture, None)  # the API died between charge and submission
    assert str(fixture.pose_id) not in {r["poseId"] for r in reconcile(grace_minutes=10)}
    assert balances(fixture) == (40, 40)
    refunded = [r for r in reconcile(grace_minutes=0) if r["poseId"] == str(fixture.pose_id)]
    assert refunded and refunded[0]["reason"] == "no flow run was started for this charge"
    assert balances(fixture) == (50, 50)


def test_a_change_being_submitted_survives_the_reconciler_a_failure_starts(pose_of) -> None:  # type: ignore[no-untyped-def]
    """The automation runs the reconciler the moment any change fails; another seller's change
    charged by the API but not yet tied to its run (the tie follows the 202) is left alone."""
    from flows.refund_reconciler import refund_reconciler
    from posegen.orchestration import RECONCILE_ON_FAILURE

    submitting, failed = pose_of(credits=50), pose_of(credits=50)
    charge_like_the_api(submitting, None)
    failed_run = charge_like_the_api(failed, Crashed())
    refunded = asyncio.run(refund_reconciler(**RECONCILE_ON_FAILURE))
    assert [r["flowRunId"] for r in refunded if r["userId"] == str(failed.user_id)] == [
        str(failed_run)
    ]
    assert not [r for r in refunded if r["userId"] == str(submitting.user_id)]
    assert balances(submitting) == (40, 40) and balances(failed) == (50, 50)
    assert load_pose(submitting).status == "processing"


def test_run_that_no_longer_exists_is_refunded(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=50)
    run_id = charge_like_the_api(fixture, Running())

    async def delete() -> None:
        async with get_client() as client:
            await client.delete_flow_run(run_id)

    asyncio.run(delete())
    refunded = [r for r in reconcile(grace_minutes=0) if r["poseId"] == str(fixture.pose_id)]
    assert refunded and refunded[0]["reason"] == "its flow run no longer exists"
    assert balances(fixture) == (50, 50)


def test_run_stuck_running_past_the_timeout_is_crashed_and_refunded(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=50)
    run_id = charge_like_the_api(fixture, Running())
    assert str(fixture.pose_id) not in {r["poseId"] for r in reconcile(grace_minutes=0)}
    refunded = [
        r
        for r in reconcile(grace_minutes=0, running_timeout=0)
        if r["poseId"] == str(fixture.pose_id)
    ]
    assert refunded and refunded[0]["reason"] == "its flow run stopped responding"
    assert balances(fixture) == (50, 50)

    async def state_of() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(run_id)).state_type.value

    assert asyncio.run(state_of()) == "CRASHED"


def test_reconciler_publishes_an_artifact_of_its_refunds(pose_of) -> None:  # type: ignore[no-untyped-def]
    fixture = pose_of(credits=50)
    charge_like_the_api(fixture, Crashed())
    reconcile()

    async def latest() -> str:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
        from prefect.client.schemas.sorting import ArtifactSort

        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["refund-reconciler"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=5,
            )
            return " ".join(str(a.data) for a in artifacts)

    assert str(fixture.pose_id) in asyncio.run(latest())
