"""How a warm pool finds runs: the Scheduled event names the run, and the pool claims it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client

from posegen.runtime.warm_pool import WarmPool

pytestmark = pytest.mark.usefixtures("prefect_api")


@flow(name="wakeup-test")
async def _quick() -> int:
    return 1


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When this process asked Prefect for a deployment's scheduled runs."""
    asked: list[float] = []
    real = SyncPrefectClient.get_scheduled_flow_runs_for_deployments

    def counted(self: SyncPrefectClient, *args: object, **kwargs: object) -> object:
        asked.append(time.monotonic())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "get_scheduled_flow_runs_for_deployments", counted)
    return asked


@pytest.fixture
def pool() -> Iterator[WarmPool]:
    """One warm process; a poll too slow to matter here, so only events wake the pool."""
    pool = WarmPool(
        _quick,
        _quick.to_deployment(name="wakeups"),
        flow_path=f"{__name__}:_quick",
        size=1,
        poll_seconds=300,
    )
    pool.start()
    deadline = time.monotonic() + 120
    while not all(worker.ready for worker in pool._workers):
        assert time.monotonic() < deadline, "the warm process never became ready"
        time.sleep(0.1)
    time.sleep(2.0)  # the look for runs its readiness prompted, and the subscription, settle
    yield pool
    pool.stop(grace=10)


def _wait_completed(run_id: uuid.UUID, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_completed():
                return
            assert time.monotonic() < deadline, f"run {run_id} is {state}"
            time.sleep(0.05)


def test_a_scheduled_run_is_claimed_by_the_id_its_event_names(
    pool: WarmPool, queries: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No scheduled-runs query between the event and the claim (the query only serves wake-ups
    that name no run: the poll, a process becoming free)."""
    handed: list[float] = []
    real = WarmPool._hand_over

    def timed(self: WarmPool, *args: object) -> None:
        handed.append(time.monotonic())
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(WarmPool, "_hand_over", timed)
    with get_client(sync_client=True) as client:
        created = time.monotonic()
        run = client.create_flow_run_from_deployment(pool.deployment_id)
    _wait_completed(run.id, timeout=30)
    with get_client(sync_client=True) as client:
        finished = client.read_flow_run(run.id)
    assert finished.infrastructure_pid == str(pool._workers[0].process.pid)
    assert len(handed) == 1
    assert not [at for at in queries if created < at < handed[0]], "queried before claiming"


def test_a_run_scheduled_for_later_is_not_started_early(pool: WarmPool) -> None:
    from datetime import timedelta

    from prefect.states import Scheduled
    from prefect.types._datetime import now

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            pool.deployment_id, state=Scheduled(scheduled_time=now("UTC") + timedelta(hours=1))
        )
        time.sleep(2.0)
        state = client.read_flow_run(run.id).state
        assert state is not None and state.is_scheduled(), state
        client.delete_flow_run(run.id)
