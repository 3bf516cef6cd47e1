"""The warm process (posegen.runtime.warm_child): what it keeps between flow runs."""

from __future__ import annotations

import asyncio
import contextvars
import os
import ssl
import threading
from multiprocessing import Pipe
from typing import Any

import prefect.flow_engine
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client

from posegen.runtime import warm_child


@task
def _add_one(x: int) -> int:
    return x + 1


@flow
async def _two_steps(x: int) -> int:
    return _add_one(_add_one(x))


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
    pool_end, child_end = Pipe()
    state = {"busy": False, "stop": False}
    context = contextvars.copy_context()  # the test server's settings
    serving = threading.Thread(
        target=context.run,
        args=(lambda: asyncio.run(warm_child._serve(child_end, _two_steps, state)),),
        daemon=True,
    )
    serving.start()
    assert pool_end.poll(30) and pool_end.recv()[0] == "ready"
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
