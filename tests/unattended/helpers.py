"""What the unattended tests read back: runs, task runs, slots, and changes submitted through
the API (as a seller's app submits them)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.settings import PREFECT_API_URL

from posegen.api.app import create_app
from posegen.api.paths import BASE_PATH
from posegen.auth import create_token
from tests.reliability.conftest import Owner, Runner, slots_held

SOLID_BODY = {"backgroundMode": "solid_color", "backgroundColor": "#2E8B57"}
AI_BODY = {"backgroundMode": "ai_generate", "backgroundPrompt": "a quiet studio backdrop"}


def submit_changes(owner: Owner, body: dict[str, str]) -> list[uuid.UUID]:
    """One change per pose of `owner`, back to back through the API; the flow run ids."""
    headers = {"Authorization": f"Bearer {create_token(owner.user_id, 'USER')}"}
    run_ids = []
    with TestClient(create_app()) as client:
        for pose_id in owner.pose_ids:
            response = client.post(
                f"{BASE_PATH}/poses/{pose_id}/background", json=body, headers=headers
            )
            assert response.status_code == 202, response.text
            run_ids.append(uuid.UUID(response.json()["flowRunId"]))
    return run_ids


def flow_runs(run_ids: list[uuid.UUID]) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), limit=len(run_ids)
        )


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, log: Callable[[], str] = str
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` (and a log) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s\n{log()}")
        time.sleep(0.5)


def wait_for_final(run_ids: list[uuid.UUID], timeout: float, log: Callable[[], str]) -> None:
    states: Counter[str] = Counter()

    def all_final() -> bool:
        runs = flow_runs(run_ids)
        states.clear()
        states.update(run.state.name if run.state else "NONE" for run in runs)
        return all(run.state is not None and run.state.is_final() for run in runs)

    wait_until(all_final, timeout, "every run ended", lambda: f"states: {dict(states)}\n{log()}")


def task_runs(run_id: uuid.UUID) -> list[TaskRun]:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )


def active_slots() -> int:
    return slots_held(PREFECT_API_URL.value())


def deployment_runs(full_name: str) -> list[FlowRun]:
    """Every run of the deployment `flow/deployment`."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(full_name)
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )


def most_at_once(windows: list[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end] windows open at one instant."""
    edges = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows])
    open_now = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant (-1 < 1)
        open_now += step
        peak = max(peak, open_now)
    return peak


def machine_running(run_id: uuid.UUID, machines: list[Runner]) -> Runner:
    """The serving process whose warm process (or subprocess) runs this flow run."""
    with get_client(sync_client=True) as client:
        pid = client.read_flow_run(run_id).infrastructure_pid
    assert pid, f"run {run_id} names no process"
    (machine,) = [m for m in machines if int(pid) in m.flow_run_processes()]
    return machine
