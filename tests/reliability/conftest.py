"""Reliability fixtures: posegen on PostgreSQL + the S3 endpoint, with ways to break each piece.

Everything here runs the real services: the session's PostgreSQL database, moto over HTTP, a
real `prefect server start` with its services (tests/fixtures/prefect_server.py), a real runner
subprocess. The faults are real too — backends killed with `pg_terminate_backend`, S3 requests
cut by a proxy, processes killed with SIGKILL — so a passing test says what happens in
production, not what a mock was told to do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from posegen.config import reset_settings
from posegen.db.models import CreditTransaction, Pose
from posegen.db.session import reset_engines, session_scope
from posegen.storage import reset_storage
from tests.api.conftest import png_bytes
from tests.conftest import ROOT, make_user
from tests.fixtures.prefect_server import SLOT_LEASE_SECONDS, on_real_prefect_server
from tests.fixtures.s3 import S3_TEST_CREDENTIALS

# The per-user limit on background changes stays on (its bucket row is contended too) but is
# raised far above the burst, so contention shows up as 202/403 and never as 429.
_RATE_LIMIT_ENV = {"POSEGEN_RATE_LIMIT_BACKGROUND_PER_MINUTE": "100000"}


def _reset_caches() -> None:
    reset_settings()
    reset_engines()
    reset_storage()


@pytest.fixture
def prefect_api(real_prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This directory's Prefect API is a real `prefect server start`, for this process and its
    children: these tests kill runs inside their slot, and only a real server's repossessor
    gives such a slot back (the session's harness server runs none)."""
    with on_real_prefect_server(real_prefect_server, monkeypatch) as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def killed_runs_give_their_slots_back(real_prefect_server: str) -> Iterator[None]:
    """After each module, every `posegen-background-change` slot is free again within a lease.

    A run killed inside its slot (SIGKILL, a cancellation) cannot release it; its lease lapses
    and the server's repossessor frees it. Nothing resets slots behind the tests' backs: this
    waits for the product to do it, and fails when it does not (a leaked slot would stop one
    in three changes for good).
    """
    yield
    deadline = time.monotonic() + SLOT_LEASE_SECONDS + 15
    held = slots_held(real_prefect_server)
    while held and time.monotonic() < deadline:
        time.sleep(1)
        held = slots_held(real_prefect_server)
    assert held == 0, f"{held} slot(s) still held {SLOT_LEASE_SECONDS + 15} s after the module"


def slots_held(api: str) -> int:
    """Active slots of the `posegen-background-change` limit on the server at `api`."""
    from posegen.orchestration import BACKGROUND_CHANGE_LIMIT

    found = httpx.get(f"{api}/v2/concurrency_limits/{BACKGROUND_CHANGE_LIMIT}", timeout=10)
    if found.status_code == 404:  # no test of the module made the limits on this server
        return 0
    found.raise_for_status()
    return int(found.json()["active_slots"])


@pytest.fixture
def pg_s3_env(
    pg_url: str, s3_storage_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """posegen pointed at the session's PostgreSQL database and a fresh bucket on moto."""
    env = {
        "POSEGEN_DATABASE_URL": pg_url,
        "POSEGEN_STORAGE_URL": s3_storage_url,
        "POSEGEN_S3_ENDPOINT_URL": s3_endpoint,
        **S3_TEST_CREDENTIALS,
        **_RATE_LIMIT_ENV,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    yield env
    monkeypatch.undo()
    _reset_caches()


@dataclass(frozen=True)
class Owner:
    """A user with one generation of poses, and the opening balance the invariant starts from."""

    user_id: uuid.UUID
    generation_id: uuid.UUID
    pose_ids: list[uuid.UUID]
    opening: int
    db_url: str

    @property
    def pose_id(self) -> uuid.UUID:
        return self.pose_ids[0]


@pytest.fixture
def owner_of(pg_s3_env: dict[str, str]) -> Callable[..., Owner]:
    """Factory: a fresh user with `credits` owning one generation of `poses` tiny poses."""
    from posegen.domain.poses import import_generation
    from posegen.storage import get_storage

    url = pg_s3_env["POSEGEN_DATABASE_URL"]

    def make(credits: int = 100, poses: int = 1) -> Owner:
        user_id = make_user(url, credits=credits)
        with session_scope(url) as session:
            generation = import_generation(
                session, get_storage(), user_id, [png_bytes((48, 64)) for _ in range(poses)]
            )
            pose_ids = [pose.id for pose in generation.poses]
            return Owner(user_id, generation.id, pose_ids, credits, url)

    return make


# -- reading the outcome ----------------------------------------------------------------------


@dataclass(frozen=True)
class Books:
    """One user's credits as the database has them: balance, ledger and what the rows say."""

    balance: int
    amounts: list[int]
    charges: list[CreditTransaction]
    refunds: list[CreditTransaction]

    @property
    def ledger_sum(self) -> int:
        return sum(self.amounts)


def books(owner: Owner) -> Books:
    from posegen.domain.credits import balance

    with session_scope(owner.db_url) as session:
        rows = list(
            session.scalars(
                select(CreditTransaction)
                .where(CreditTransaction.user_id == owner.user_id)
                .order_by(CreditTransaction.created_at)
            )
        )
        for row in rows:
            session.expunge(row)
        current = balance(session, owner.user_id)
    return Books(
        balance=current,
        amounts=[row.amount for row in rows],
        charges=[row for row in rows if row.reason == "background_change"],
        refunds=[row for row in rows if row.refund_of is not None],
    )


def assert_invariant(owner: Owner) -> Books:
    """balance = sum(ledger), every refund refunds a charge of this user, at most once each."""
    state = books(owner)
    assert state.balance == state.ledger_sum, state
    charge_ids = {charge.id for charge in state.charges}
    refunded = [refund.refund_of for refund in state.refunds]
    assert len(refunded) == len(set(refunded)), f"a charge was refunded twice: {refunded}"
    assert set(refunded) <= charge_ids
    return state


def load_pose(owner: Owner, pose_id: uuid.UUID | None = None) -> Pose:
    with session_scope(owner.db_url) as session:
        pose = session.get(Pose, pose_id or owner.pose_id)
        assert pose is not None
        session.expunge(pose)
        return pose


def reconcile(running_timeout_minutes: float = 30.0, grace_minutes: float = 10.0) -> list[Any]:
    """One run of the `refund-reconciler` flow, in this process."""
    from flows.refund_reconciler import refund_reconciler

    return asyncio.run(
        refund_reconciler(
            grace_minutes=grace_minutes, running_timeout_minutes=running_timeout_minutes
        )
    )


def run_state(run_id: uuid.UUID) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        return state.type.value if state else "NONE"


def wait_for_run(run_id: uuid.UUID, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    current = run_state(run_id)
    while current not in states and time.monotonic() < deadline:
        time.sleep(0.5)
        current = run_state(run_id)
    return current


# -- PostgreSQL faults -----------------------------------------------------------------------


class Terminator:
    """Kills app connections to the test database from an admin connection of its own."""

    def __init__(self, db_url: str) -> None:
        self.database = db_url.rsplit("/", 1)[1]
        self._engine = create_engine(db_url, isolation_level="AUTOCOMMIT", poolclass=None)

    def kill(self, pid: int) -> bool:
        with self._engine.connect() as conn:
            return bool(conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}))

    def kill_all(self) -> int:
        """Every other backend on this database; the number killed."""
        with self._engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": self.database},
            ).all()
        return len(killed)

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture
def terminator(pg_s3_env: dict[str, str]) -> Iterator[Terminator]:
    killer = Terminator(pg_s3_env["POSEGEN_DATABASE_URL"])
    yield killer
    killer.close()


# -- a runner process that tests may kill -------------------------------------------------------


class Runner:
    """`python -m deployments.serve` as under `make run`, on this test's database and bucket.

    Unlike the e2e `served` fixture it hands out the process, so a test can SIGKILL it (with
    or without its flow-run children) or stop and restart it.
    """

    def __init__(self, env: dict[str, str], log: Path, deployment: str) -> None:
        self.env = env
        self.log_path = log
        self.deployment = deployment
        self.process: subprocess.Popen[bytes] | None = None

    # A serving process on a loaded 2-core machine has needed more than 90 s to register.
    def start(self, timeout: float = 240.0) -> None:
        self.launch()
        self.wait_served(timeout)

    def launch(self) -> None:
        """Start the process without waiting (machines booting side by side)."""
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_served(self, timeout: float = 240.0) -> None:
        """Until the deployment is registered and not paused (what serving it looks like)."""
        assert self.process is not None
        api = self.env["PREFECT_API_URL"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            found = httpx.get(f"{api}/deployments/name/{self.deployment}", timeout=5)
            if found.status_code == 200 and not found.json().get("paused"):
                return
            time.sleep(0.3)
        pytest.fail(f"the runner never served {self.deployment}:\n{self.log_tail()}")

    def flow_run_processes(self) -> dict[int, int]:
        from posegen.runtime.processes import process_tree

        assert self.process is not None
        return process_tree(self.process.pid)

    def kill_everything(self) -> None:
        """SIGKILL the runner and every flow run it started: the machine is gone."""
        from posegen.runtime.processes import still_running

        assert self.process is not None
        tree = self.flow_run_processes()
        os.killpg(self.process.pid, signal.SIGKILL)
        for pid in still_running(tree):
            os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as an operator or `posegen up` stops it (serve pauses its deployments)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def runner_of(
    prefect_api: str,
    pg_s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Callable[..., Runner]]:
    """Factory for a (not yet started) runner serving this test's own deployment name."""
    deployment = f"background-change/reliability-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE", deployment)
    reset_settings()
    runners: list[Runner] = []

    def make(**extra_env: str) -> Runner:
        env = {
            **os.environ,
            **pg_s3_env,
            "PREFECT_API_URL": prefect_api,
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": deployment,
            **extra_env,
        }
        runner = Runner(env, tmp_path / f"runner-{len(runners)}.log", deployment)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.stop()


@pytest.fixture
def unserved_deployment(
    prefect_api: str, pg_s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """A `background-change` deployment nobody serves: the API submits, nothing runs yet."""
    from flows.background_change import background_change

    name = f"reliability-unserved-{uuid.uuid4().hex[:8]}"
    deployment = background_change.to_deployment(name=name)
    deployment.apply()
    full_name = f"background-change/{name}"
    monkeypatch.setenv("POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE", full_name)
    reset_settings()
    return full_name
