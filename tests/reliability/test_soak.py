"""Soak: the long reliability runs (`make soak`, not in `make test`): every accepted change of a
contended burst run through the real runner, the runner down while work is submitted, and the
whole `posegen up` stack restarted with work finished and in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from posegen.api.app import create_app
from posegen.api.paths import BASE_PATH
from posegen.auth import create_token
from posegen.config import Settings
from posegen.db.models import CreditTransaction, User
from posegen.db.session import session_scope
from tests.reliability.conftest import (
    Owner,
    Runner,
    assert_invariant,
    load_pose,
    run_state,
    wait_for_run,
)
from tests.reliability.test_credits_contention import COST, COVERED, REQUESTS, fire
from tests.sse import serve_api
from tests.stack_harness import STARTUP_TIMEOUT, StackOutput, free_ports, printed_value

pytestmark = pytest.mark.soak


@pytest.mark.timeout(1200)
def test_every_accepted_change_of_a_contended_burst_completes_through_the_runner(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner]
) -> None:
    owner = owner_of(credits=COVERED * COST, poses=REQUESTS)
    runner = runner_of()
    runner.start()
    token = create_token(owner.user_id, "USER")
    with serve_api(create_app()) as base:
        started = time.monotonic()
        # The runner's flow runs share the machine and the SQLite-backed Prefect test server.
        responses = asyncio.run(fire(base, token, owner.pose_ids, timeout=600))
        submitted = time.monotonic() - started
    assert Counter(r.status_code for r in responses) == {202: COVERED, 403: REQUESTS - COVERED}
    runs = {
        uuid.UUID(r.json()["poseId"]): uuid.UUID(r.json()["flowRunId"])
        for r in responses
        if r.status_code == 202
    }
    deadline = time.monotonic() + 900
    for run_id in runs.values():
        left = max(1.0, deadline - time.monotonic())
        assert wait_for_run(run_id, {"COMPLETED", "FAILED", "CRASHED"}, left) == "COMPLETED", (
            runner.log_tail()
        )
    finished = time.monotonic() - started
    print(f"\n{REQUESTS} requests in {submitted:.1f} s; {COVERED} runs done after {finished:.1f} s")
    for pose_id in runs:
        pose = load_pose(owner, pose_id)
        assert pose.status == "ready" and pose.background_changed
    state = assert_invariant(owner)
    assert state.balance == 0 and len(state.charges) == COVERED and not state.refunds


def test_run_submitted_while_the_runner_is_down_completes_when_it_is_back(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner], prefect_api: str
) -> None:
    """The runner stopped as operators stop it (SIGTERM: serve pauses its deployments); the
    API still accepts and submits; the run waits, Scheduled, and runs once a runner is back."""
    owner = owner_of()
    first = runner_of()
    first.start()
    first.stop()
    headers = {"Authorization": f"Bearer {create_token(owner.user_id, 'USER')}"}
    with TestClient(create_app()) as client:
        response = client.post(
            f"{BASE_PATH}/poses/{owner.pose_id}/background",
            json={"backgroundMode": "solid_color", "backgroundColor": "#336699"},
            headers=headers,
        )
    assert response.status_code == 202, response.text
    run_id = uuid.UUID(response.json()["flowRunId"])
    # Nothing can pick it up meanwhile — no serving process, the deployment paused — so
    # what it is now it stays until a runner is back (no sleep-and-see needed).
    assert first.process is not None and first.process.poll() is not None
    paused = httpx.get(f"{prefect_api}/deployments/name/{first.deployment}", timeout=5).json()
    assert paused["paused"] is True
    assert run_state(run_id) == "SCHEDULED"
    assert load_pose(owner).status == "processing"

    second = runner_of()
    started = time.monotonic()
    second.start()
    assert wait_for_run(run_id, {"COMPLETED", "FAILED", "CRASHED"}, 180) == "COMPLETED", (
        second.log_tail()
    )
    print(f"\nrunner back: the waiting run completed {time.monotonic() - started:.1f} s later")
    pose = load_pose(owner)
    assert pose.status == "ready" and pose.background_color == "#336699"
    state = assert_invariant(owner)
    assert len(state.charges) == 1 and not state.refunds


# -- the whole stack -------------------------------------------------------------------------


class _Stack:
    """`posegen up` on a fixed home and fixed ports, so a restart finds the same state."""

    def __init__(self, home: Path) -> None:
        self.api_port, self.prefect_port = free_ports(2)
        self.env = {
            **os.environ,
            "POSEGEN_HOME": str(home),
            "POSEGEN_API_PORT": str(self.api_port),
            "POSEGEN_PREFECT_PORT": str(self.prefect_port),
        }
        for name in ("PREFECT_API_URL", "POSEGEN_DATABASE_URL", "POSEGEN_STORAGE_URL"):
            self.env.pop(name, None)
        # The stack's embedded PostgreSQL (read while it runs).
        self.db_url = Settings(home=home).embedded_database_url("posegen")
        self.base = f"http://127.0.0.1:{self.api_port}{BASE_PATH}"
        self.prefect = f"http://127.0.0.1:{self.prefect_port}/api"
        self.process: subprocess.Popen[str] | None = None
        self.output: StackOutput | None = None

    def start(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "posegen.cli", "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.output = StackOutput(self.process.stdout)
        return self.output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pose(self, pose_id: str, headers: dict[str, str]) -> dict[str, Any]:
        return httpx.get(f"{self.base}/poses/{pose_id}", headers=headers, timeout=10).json()

    def wait_settled(self, pose_id: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        pose = self.pose(pose_id, headers)
        while pose["status"] == "processing" and time.monotonic() < deadline:
            time.sleep(0.5)
            pose = self.pose(pose_id, headers)
        return pose

    def run_reconciler(self) -> None:
        """What the 5-minute schedule does, now."""
        found = httpx.get(
            f"{self.prefect}/deployments/name/refund-reconciler/refund-reconciler", timeout=10
        )
        found.raise_for_status()
        run = httpx.post(
            f"{self.prefect}/deployments/{found.json()['id']}/create_flow_run",
            json={"parameters": {"grace_minutes": 0}},
            timeout=10,
        )
        run.raise_for_status()
        assert wait_for_run_at(self.prefect, run.json()["id"], 120) == "COMPLETED"

    def books(self, user_id: str) -> tuple[int, list[tuple[int, str]]]:
        """The balance and the ledger as (amount, reason) rows (grants and top-ups included)."""
        with session_scope(self.db_url) as session:
            balance = session.scalar(select(User.credits).where(User.id == uuid.UUID(user_id)))
            rows = session.execute(
                select(CreditTransaction.amount, CreditTransaction.reason)
                .where(CreditTransaction.user_id == uuid.UUID(user_id))
                .order_by(CreditTransaction.created_at)
            ).all()
        assert balance is not None
        return balance, [(amount, reason) for amount, reason in rows]


def wait_for_run_at(prefect: str, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = httpx.get(f"{prefect}/flow_runs/{run_id}", timeout=10).json()["state"]["type"]
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state
        time.sleep(0.5)
    return state


@pytest.mark.timeout(1200)
def test_restarting_the_whole_stack_loses_no_submitted_or_finished_work(tmp_path: Path) -> None:
    stack = _Stack(tmp_path / "home")
    try:
        printed = stack.start()
        token, pose_id = printed_value(printed, "user token"), printed_value(printed, "demo pose")
        user_id = str(uuid.UUID(_token_subject(token)))
        headers = {"Authorization": f"Bearer {token}"}
        generation = stack.pose(pose_id, headers)["generationId"]
        poses = [
            p["id"]
            for p in httpx.get(
                f"{stack.base}/generations/{generation}", headers=headers, timeout=10
            ).json()["poses"]
        ]
        assert len(poses) >= 3

        def change(target: str, colour: str) -> str:
            accepted = httpx.post(
                f"{stack.base}/poses/{target}/background",
                json={"backgroundMode": "solid_color", "backgroundColor": colour},
                headers=headers,
                timeout=30,
            )
            assert accepted.status_code == 202, accepted.text
            return str(accepted.json()["flowRunId"])

        change(poses[0], "#112233")
        finished = stack.wait_settled(poses[0], headers, 180)
        assert finished["status"] == "ready" and finished["backgroundChanged"], finished
        in_flight = {poses[1]: change(poses[1], "#445566"), poses[2]: change(poses[2], "#778899")}
        stack.stop()  # Ctrl-C with two changes submitted a moment ago

        stack.start()
        after = stack.pose(poses[0], headers)
        assert after["status"] == "ready" and after["imageUrl"] == finished["imageUrl"]
        image = httpx.get(
            f"http://127.0.0.1:{stack.api_port}{after['imageUrl']}", headers=headers, timeout=10
        )
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"

        outcomes: dict[str, str] = {}
        for target, run_id in in_flight.items():
            pose = stack.wait_settled(target, headers, 240)
            if pose["status"] == "processing":  # its run was in flight and marked Crashed
                stack.run_reconciler()
                pose = stack.pose(target, headers)
            state = wait_for_run_at(stack.prefect, run_id, 30)
            outcomes[target] = f"{state}/{pose['status']}"
            assert (state, pose["status"]) in {("COMPLETED", "ready"), ("CRASHED", "failed")}, (
                pose,
                state,
            )
            if pose["status"] == "failed":
                assert "refunded" in (pose["errorMessage"] or "")
        print(f"\nin flight at the restart: {sorted(outcomes.values())}")
        balance, rows = stack.books(user_id)
        assert balance == sum(amount for amount, _ in rows), rows
        reasons = Counter(reason for _, reason in rows)
        failed = sum(outcome.endswith("failed") for outcome in outcomes.values())
        assert reasons["background_change"] == 3 and reasons["refund"] == failed, rows
    finally:
        stack.stop()


def _token_subject(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])
