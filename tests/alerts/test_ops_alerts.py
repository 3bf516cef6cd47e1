"""The five alerts, driven by real state: changes recorded the way the flow records them, runs
on the Prefect server, requests in the database. Each fires once (the ops-alerts flow's event
reaches the webhook through the Prefect automation), is not repeated while it holds, and
resolves when the state goes back below its threshold. /metrics shows the same figures."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.states import Cancelled, Completed, Running
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from flows.ops_alerts import ops_alerts
from posegen.alerts import AlertStatus
from posegen.db.community import PoseRequest, RequestStatus
from posegen.db.models import User
from posegen.db.operations import AlertState
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange, complete_change, fail_change, start_change
from posegen.domain.pose_requests import (
    AdminAction,
    PoseRequestCreate,
    change_status,
    create_request,
)
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tasks.ops_alerts import ARTIFACT_KEY
from tests.alerts.conftest import WebhookReceiver
from tests.api.conftest import png_bytes
from tests.conftest import make_user

SOLID = BackgroundChange.model_validate(
    {"backgroundMode": "solid_color", "backgroundColor": "#FF8800"}
)

pytestmark = pytest.mark.usefixtures("alerts_env")


def run_alerts() -> dict[str, AlertStatus]:
    return {status.name: status for status in asyncio.run(ops_alerts())}


def stored_states() -> dict[str, bool]:
    with session_scope() as session:
        return {row.name: row.triggered for row in session.scalars(select(AlertState))}


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One /metrics scrape of a real API app on the same database and Prefect server."""
    from posegen.api.app import create_app

    with TestClient(create_app()) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


class Changes:
    """Background changes of one pose, each charged, then completed or failed as the flow does."""

    def __init__(self) -> None:
        url = os.environ["POSEGEN_DATABASE_URL"]
        self.user_id = make_user(url, credits=100_000)
        with session_scope() as session:
            generation = import_generation(session, get_storage(), self.user_id, [png_bytes()])
            self.pose_id = generation.poses[0].id
            self.image_key = generation.poses[0].image_key

    def run(self, *, completed: int = 0, failed: int = 0) -> None:
        for outcome in ["completed"] * completed + ["failed"] * failed:
            request_id = uuid.uuid4()
            with session_scope() as session:
                user = session.get(User, self.user_id)
                assert user is not None
                start_change(session, user, self.pose_id, request_id, SOLID)
                if outcome == "completed":
                    complete_change(
                        session,
                        self.pose_id,
                        request_id,
                        SOLID,
                        image_key=self.image_key,
                        mask_key=self.image_key,
                        background_key=self.image_key,
                    )
                else:
                    fail_change(session, self.pose_id, request_id, "FLUX said no.")


def test_rate_alerts_fire_once_and_resolve_as_changes_succeed(webhook: WebhookReceiver) -> None:
    changes = Changes()
    failure, refund = "Background-change failure rate", "Credit refund rate"

    # 6 refunds of 100 charges: above 5 %, but 6 % failures is below 10 %.
    changes.run(completed=94, failed=6)
    statuses = run_alerts()
    assert statuses["credit-refund-rate"].triggered
    assert statuses["credit-refund-rate"].value == pytest.approx(0.06)
    assert not statuses["background-change-failure-rate"].triggered
    assert webhook.wait_for(f"ALERT: {refund} is 6.0 %", 1) == [
        "[posegen] ALERT: Credit refund rate is 6.0 % (threshold 5.0 %); "
        "6 refunds of 100 charges over the last 15 min"
    ]
    metrics = scrape()
    assert metrics[("posegen_background_changes_total", (("outcome", "failed"),))] == 6
    assert metrics[("posegen_background_changes_total", (("outcome", "completed"),))] == 94
    assert metrics[("posegen_credit_charges_total", ())] == 100
    assert metrics[("posegen_credit_refunds_total", ())] == 6
    assert metrics[("posegen_background_change_duration_seconds_count", ())] == 94
    assert metrics[("posegen_alert_source_up", (("source", "database"),))] == 1

    # 11 of 105 failed: the failure alert fires; the refund alert still holds, silently.
    changes.run(failed=5)
    statuses = run_alerts()
    assert statuses["background-change-failure-rate"].triggered
    assert statuses["background-change-failure-rate"].shown == "10.5 %"
    assert webhook.wait_for(f"ALERT: {failure}", 1)[0].endswith(
        "11 of 105 failed over the last 15 min"
    )

    # Back below 10 % (11 of 210): resolved; refunds (5.2 %) still above 5 %.
    changes.run(completed=105)
    statuses = run_alerts()
    assert not statuses["background-change-failure-rate"].triggered
    assert statuses["credit-refund-rate"].triggered
    assert webhook.wait_for(f"resolved: {failure}", 1)

    # 11 of 220 is 5 %, not above it: the refund alert resolves too.
    changes.run(completed=10)
    statuses = run_alerts()
    assert not statuses["credit-refund-rate"].triggered
    assert webhook.wait_for(f"resolved: {refund}", 1)
    assert stored_states()["credit-refund-rate"] is False

    # One pair per alert: nothing repeated while an alert held.
    assert len(webhook.texts(refund)) == 2
    assert len(webhook.texts(failure)) == 2
    assert set(webhook.content_types) == {"application/json"}


async def _create_runs(deployment_name: str, count: int) -> list[uuid.UUID]:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        runs = [await client.create_flow_run_from_deployment(deployment.id) for _ in range(count)]
        return [run.id for run in runs]


async def _set_state(run_id: uuid.UUID, state: Any) -> None:
    await _set_states([run_id], lambda: state)


async def _set_states(run_ids: list[uuid.UUID], state: Callable[[], Any]) -> None:
    async with get_client() as client:
        for run_id in run_ids:
            await client.set_flow_run_state(run_id, state(), force=True)


def test_queue_depth_alert_fires_at_101_waiting_runs(
    webhook: WebhookReceiver, alerts_env: dict[str, str]
) -> None:
    title = "Background changes waiting to run"
    run_ids = asyncio.run(_create_runs(alerts_env["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"], 101))
    statuses = run_alerts()
    assert statuses["background-change-queue-depth"].value == 101
    assert statuses["background-change-queue-depth"].triggered
    assert webhook.wait_for(f"ALERT: {title} is 101 (threshold 100)", 1)
    assert scrape()[("posegen_background_change_queue_depth", ())] == 101

    run_alerts()  # still 101: no second message
    asyncio.run(_set_state(run_ids[0], Cancelled()))
    statuses = run_alerts()
    assert statuses["background-change-queue-depth"].value == 100
    assert not statuses["background-change-queue-depth"].triggered
    assert webhook.wait_for(f"resolved: {title} is 100", 1)
    assert len(webhook.texts(title)) == 2
    asyncio.run(_set_states(run_ids[1:], Cancelled))
    assert run_alerts()["background-change-queue-depth"].value == 0


def test_processing_alert_fires_for_a_run_held_running_past_the_limit(
    webhook: WebhookReceiver, alerts_env: dict[str, str], settings_env: Callable[..., None]
) -> None:
    settings_env(POSEGEN_ALERT_PROCESSING_SECONDS="2")
    title = "Longest-running background change"
    (run_id,) = asyncio.run(_create_runs(alerts_env["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"], 1))
    asyncio.run(_set_state(run_id, Running()))
    deadline = time.monotonic() + 30
    statuses = run_alerts()
    while not statuses["background-change-processing-time"].triggered:
        assert statuses["background-change-processing-time"].value <= 2
        assert time.monotonic() < deadline, "the held run never counted as running too long"
        statuses = run_alerts()
    assert statuses["background-change-processing-time"].value > 2
    assert webhook.wait_for(f"ALERT: {title}", 1)[0].endswith(
        "(threshold 2 s); a run has been Running this long"
    )
    assert scrape()[("posegen_background_change_longest_running_seconds", ())] > 2

    asyncio.run(_set_state(run_id, Completed()))
    statuses = run_alerts()
    assert statuses["background-change-processing-time"].value == 0
    assert webhook.wait_for(f"resolved: {title} is 0 s", 1)
    assert len(webhook.texts(title)) == 2


def test_pending_requests_alert_fires_at_51_and_resolves_when_one_is_approved(
    webhook: WebhookReceiver, alerts_env: dict[str, str]
) -> None:
    title = "Pose requests waiting for an admin"
    url = alerts_env["POSEGEN_DATABASE_URL"]
    seller = make_user(url)
    admin = make_user(url, admin=True)
    with session_scope() as session:
        user = session.get(User, seller)
        assert user is not None
        for number in range(51):
            create_request(
                session,
                user,
                PoseRequestCreate.model_validate({"poseName": f"Pose number {number}"}),
            )
    statuses = run_alerts()
    assert statuses["pose-requests-pending"].value == 51
    assert webhook.wait_for(f"ALERT: {title} is 51 (threshold 50)", 1)
    assert scrape()[("posegen_pose_requests_pending", ())] == 51

    with session_scope() as session:
        first = session.scalars(select(PoseRequest.id).limit(1)).one()
        reviewer = session.get(User, admin)
        assert reviewer is not None
        change_status(session, reviewer, first, RequestStatus.APPROVED, AdminAction())
    statuses = run_alerts()
    assert not statuses["pose-requests-pending"].triggered
    assert webhook.wait_for(f"resolved: {title} is 50", 1)
    assert len(webhook.texts(title)) == 2


def test_each_run_publishes_the_table_artifact() -> None:
    statuses = run_alerts()

    async def latest() -> Any:
        async with get_client() as client:
            (artifact,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
                sort=ArtifactSort.UPDATED_DESC,
                limit=1,
            )
            return artifact

    artifact = asyncio.run(latest())
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [row["alert"] for row in rows] == [s.title for s in statuses.values()]
    assert {row["status"] for row in rows} == {"ok"}
    assert artifact.description == "posegen alerts: 0 of 5 triggered"
