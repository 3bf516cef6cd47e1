"""The warm process (posegen.runtime.warm_child): what it keeps between flow runs."""

from __future__ import annotations

import asyncio
import contextvars
import os
import ssl
import threading
import time
from multiprocessing import Pipe
from typing import Any

import prefect.flow_engine
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.concurrency import _asyncio as prefect_slots
from prefect.concurrency.asyncio import concurrency

from posegen.runtime import warm_child


@task
def _add_one(x: int) -> int:
    return x + 1


@flow
async def _two_steps(x: int) -> int:
    return _add_one(_add_one(x))


_LIMIT = "test-warm-child-slot"


@flow
async def _in_a_slot(x: int) -> int:
    async with concurrency(_LIMIT, occupy=1, strict=True, lease_duration=60):
        return _add_one(x)


def _serving(flow_: Any) -> tuple[Any, threading.Thread]:
    """A warm process's serving loop on a thread of this process, ready for runs."""
    pool_end, child_end = Pipe()
    state = {"busy": False, "stop": False}
    context = contextvars.copy_context()  # the test server's settings
    serving = threading.Thread(
        target=context.run,
        args=(lambda: asyncio.run(warm_child._serve(child_end, flow_, state)),),
        daemon=True,
    )
    serving.start()
    assert pool_end.poll(30) and pool_end.recv()[0] == "ready"
    return pool_end, serving


def _slots_held(client: Any) -> int:
    return client.read_global_concurrency_limit_by_name(_LIMIT).active_slots


def test_each_run_reuses_the_processs_prefect_clients(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without clients in context, Prefect opened one for the flow run and one per sync task
    run, each building a TLS context from the CA store: a second run here builds none."""
    built: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    pool_end, serving = _serving(_two_steps)
    with get_client(sync_client=True) as client:
        for round_ in range(2):
            run = client.create_flow_run(_two_steps, parameters={"x": 1})
            client.update_flow_run(run.id, flow_version="before the run")
            if round_:
                built.clear()
            pool_end.send(run.model_dump_json())
            assert pool_end.poll(60), "the run never finished"
            assert pool_end.recv() == ("done", str(run.id))
            finished = client.read_flow_run(run.id)
            assert finished.state is not None and finished.state.is_completed(), finished.state
            # Written without waiting for it as the run started, and settled by its end.
            assert finished.flow_version == _two_steps.version
            assert finished.infrastructure_pid == str(os.getpid())  # the serving thread's
    assert built == [], "a run built a new Prefect client"
    pool_end.send(None)
    serving.join(10)
    assert not serving.is_alive()


@pytest.mark.parametrize("release_fails", [False, True])
def test_a_runs_slot_is_given_back_after_its_completed_and_before_the_next_run(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch, release_fails: bool
) -> None:
    """The run proposes Completed without waiting for its slot's release; the process settles
    the release before it reports the run done. A release that fails leaves the run Completed
    (its lease frees the slot later) and is logged."""
    real = prefect_slots.arelease_concurrency_slots_with_lease
    released_at: list[float] = []

    async def slow_release(lease_id: Any) -> None:
        await asyncio.sleep(1.0)  # far longer than proposing Completed takes
        if release_fails:
            raise RuntimeError("the API is gone")
        await real(lease_id=lease_id)
        released_at.append(time.time())

    monkeypatch.setattr(prefect_slots, "arelease_concurrency_slots_with_lease", slow_release)
    warnings: list[str] = []
    monkeypatch.setattr(warm_child.logger, "warning", lambda msg, *a, **k: warnings.append(msg % a))
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(_LIMIT, 1)
        pool_end, serving = _serving(_in_a_slot)
        run = client.create_flow_run(_in_a_slot, parameters={"x": 1})
        pool_end.send(run.model_dump_json())
        assert pool_end.poll(60), "the run never finished"
        assert pool_end.recv() == ("done", str(run.id))
        finished = client.read_flow_run(run.id)
        assert finished.state is not None and finished.state.is_completed(), finished.state
        if release_fails:
            assert _slots_held(client) == 1  # left to its lease
            assert any("give back concurrency lease" in w for w in warnings), warnings
        else:
            assert _slots_held(client) == 0, "done was reported before the slot was given back"
            assert finished.state.timestamp.timestamp() < released_at[0] - 0.5
            assert not warnings
        client.delete_global_concurrency_limit_by_name(_LIMIT)
    pool_end.send(None)
    serving.join(10)
    assert not serving.is_alive()
    # Served on a thread here: the process-wide release is Prefect's own again.
    assert prefect_slots.arelease_concurrency_slots_with_lease is slow_release


def test_the_suspension_observer_skipped_is_prefects_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm process replaces Prefect's per-run suspension observer; if a Prefect upgrade
    moves it, this fails (the skip would then quietly stop saving its websocket handshake)."""
    assert hasattr(prefect.flow_engine, "observe_flow_run_suspension")
    monkeypatch.setattr(
        prefect.flow_engine,
        "observe_flow_run_suspension",
        prefect.flow_engine.observe_flow_run_suspension,
    )
    warm_child._skip_suspension_observer()
    assert prefect.flow_engine.observe_flow_run_suspension is warm_child._no_observer


def test_the_result_storage_lookup_remembered_is_prefects_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm process asks the server for its default result storage once a minute, not per
    run; if a Prefect upgrade moves the lookup, this fails (runs would quietly ask again)."""
    import prefect.results as results

    asked: list[int] = []
    monkeypatch.setattr(
        results, "_read_server_default_result_storage_block_id", lambda: asked.append(1)
    )
    warm_child._remember_server_result_storage(seconds=60)
    for _ in range(3):
        results._read_server_default_result_storage_block_id()
    assert asked == [1]
