"""The warm pool that runs background changes (posegen.warm_pool) on PostgreSQL + S3.

What a served subprocess per run gave, the pool must keep: each run in one process that can die
alone, a dead process's run crashed and refunded exactly once, and the pool still serving.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest
from prefect.client.orchestration import get_client

from tests.reliability.conftest import (
    Owner,
    Runner,
    books,
    load_pose,
    reconcile,
    run_state,
    wait_for_run,
)
from tests.reliability.test_faults import (
    AI_BODY,
    _submit_through_the_api,
    _wait_until_polling,
    assert_charged_once,
    assert_refunded_once,
    flux,  # noqa: F401 (fixture)
)

SOLID_BODY = {"backgroundMode": "solid_color", "backgroundColor": "#2E8B57"}


def _process_of(run_id: uuid.UUID) -> int:
    with get_client(sync_client=True) as client:
        pid = client.read_flow_run(run_id).infrastructure_pid
    assert pid, f"run {run_id} names no process"
    return int(pid)


@pytest.mark.slow
def test_changes_run_in_the_same_warm_process_not_one_per_run(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner]
) -> None:
    owner = owner_of(poses=2)
    runner = runner_of(POSEGEN_WARM_WORKERS="1")
    runner.start()
    pids = []
    for pose_id in owner.pose_ids:
        run_id = _submit_through_the_api(dataclasses.replace(owner, pose_ids=[pose_id]), SOLID_BODY)
        assert wait_for_run(run_id, {"COMPLETED", "FAILED", "CRASHED"}, 120) == "COMPLETED", (
            runner.log_tail()
        )
        pids.append(_process_of(run_id))

    assert runner.process is not None
    assert pids[0] == pids[1] != runner.process.pid
    assert pids[0] in runner.flow_run_processes()  # a child of the serving process, still alive
    assert books(owner).balance == owner.opening - 2 * 10 and not books(owner).refunds


@pytest.mark.slow
def test_warm_process_killed_mid_change_is_crashed_refunded_once_and_replaced(
    owner_of: Callable[..., Owner],
    runner_of: Callable[..., Runner],
    flux,  # noqa: F811
) -> None:
    flux.scenario = "pending_then_ready"
    flux.pending_polls = 1_000_000  # the change stays in FLUX polling until killed
    first, second = owner_of(), owner_of()
    runner = runner_of(POSEGEN_WARM_WORKERS="1")
    runner.start()
    run_id = _submit_through_the_api(first, AI_BODY)
    _wait_until_polling(flux, run_id, runner)

    os.kill(_process_of(run_id), signal.SIGKILL)

    assert wait_for_run(run_id, {"CRASHED", "COMPLETED", "FAILED"}, 30) == "CRASHED", (
        runner.log_tail()
    )
    deadline = time.monotonic() + 30
    while not books(first).refunds and time.monotonic() < deadline:
        time.sleep(0.3)
    assert_refunded_once(first)  # by the crash hook the pool ran, at once
    pose = load_pose(first)
    assert pose.status == "failed" and "refunded" in (pose.error_message or "")

    flux.scenario = "ready"
    next_run = _submit_through_the_api(second, SOLID_BODY)
    assert wait_for_run(next_run, {"COMPLETED", "FAILED", "CRASHED"}, 120) == "COMPLETED", (
        runner.log_tail()
    )
    assert _process_of(next_run) != _process_of(run_id)  # a new warm process took over
    assert_charged_once(second)


@pytest.mark.slow
def test_a_busy_warm_process_dies_with_the_serving_process_and_its_run_is_refunded(
    owner_of: Callable[..., Owner],
    runner_of: Callable[..., Runner],
    flux,  # noqa: F811
) -> None:
    """An orphaned warm process would keep its run and renew its concurrency slot forever."""
    flux.scenario = "pending_then_ready"
    flux.pending_polls = 1_000_000  # the change stays in FLUX polling
    owner = owner_of()
    runner = runner_of(POSEGEN_WARM_WORKERS="1")
    runner.start()
    run_id = _submit_through_the_api(owner, AI_BODY)
    _wait_until_polling(flux, run_id, runner)
    warm = _process_of(run_id)
    assert runner.process is not None

    runner.process.kill()  # the serving process alone, not its group
    runner.process.wait(timeout=10)

    deadline = time.monotonic() + 15
    while _alive(warm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(warm), "the busy warm process outlived its pool"
    assert run_state(run_id) == "RUNNING"  # nobody left to say otherwise: the reconciler's case
    refunded = [r for r in reconcile(running_timeout_minutes=0) if r["flowRunId"] == str(run_id)]
    assert len(refunded) == 1
    assert_refunded_once(owner)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
