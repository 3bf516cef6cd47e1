"""The process a warm pool keeps: import once, warm up, then run one flow run at a time.

Besides the imports and the model, the process keeps what Prefect's engine would otherwise
build for every run, measured as most of a run's orchestration time (bench/RESULTS.md, issue 16):

- one event loop and one async and one sync Prefect client for its whole life. Without a client
  in context, the engine opens a new one for the flow run and one per sync task run, and each
  builds a TLS context from the system's CA store (50-130 ms here), even over plain http;
- the flow run itself, sent by the pool that claimed it, instead of reading it back;
- no suspension observer (see `_skip_suspension_observer`);
- two writes nothing in the run reads are sent without waiting for the answer, and awaited
  once the run is over, before the process takes the next (see `_WritesSettledAtRunEnd`): the
  engine's bookkeeping as a run starts (its flow version and retry policy, and here the
  process's pid), and the release of a concurrency slot, so the run's Completed need not wait
  for it;
- the server's default result storage, asked once a minute instead of once per run (see
  `_remember_server_result_storage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from posegen.imaging.heap import release_freed_memory

logger = logging.getLogger("posegen.warm_pool")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_main(conn: Connection, flow_path: str, warm_up: str | None, pool_pid: int) -> None:
    """Run the flow runs the pool sends (each a claimed FlowRun as JSON), one at a time, until
    told to stop.

    SIGTERM while a run executes lets that run finish (the pool's grace) and then exits; SIGTERM
    while idle exits at once. The process dies with the pool's (see `_die_with_the_pool`).
    """
    _die_with_the_pool(pool_pid)
    state = {"busy": False, "stop": False}

    def on_sigterm(signum: int, frame: Any) -> None:
        state["stop"] = True
        if not state["busy"]:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the pool decides
    flow = _import(flow_path)
    if warm_up:
        _import(warm_up)()
    _skip_suspension_observer()
    _remember_server_result_storage()
    asyncio.run(_serve(conn, flow, state))


async def _serve(conn: Connection, flow: Any, state: dict[str, bool]) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.context import AsyncClientContext, SyncClientContext
    from prefect.flow_engine import run_flow

    loop = asyncio.get_running_loop()
    # Entered once: every run's engine, its tasks and posegen's own `get_client()` calls find
    # these clients in context and reuse them (and their open connections).
    async with AsyncClientContext.get_or_create() as clients:
        writes = _WritesSettledAtRunEnd(clients.client)
        with SyncClientContext.get_or_create(), writes.releasing_slots():
            conn.send(("ready", os.getpid()))
            while not state["stop"]:
                try:
                    message = await loop.run_in_executor(None, conn.recv)
                except (EOFError, OSError):
                    return
                if message is None:
                    return
                state["busy"] = True
                flow_run = None
                try:
                    flow_run = FlowRun.model_validate_json(message)
                    if flow.isasync:
                        await run_flow(flow, flow_run=flow_run, return_type="state")
                    else:  # a sync flow blocks: keep it off the loop (to_thread keeps context)
                        await asyncio.to_thread(
                            run_flow, flow, flow_run=flow_run, return_type="state"
                        )
                except BaseException:
                    run_id = flow_run.id if flow_run else "?"
                    logger.exception("flow run %s ended with an engine error", run_id)
                finally:
                    await writes.settle()
                    state["busy"] = False
                try:
                    conn.send(("done", str(flow_run.id) if flow_run else None))
                except OSError:
                    return
                release_freed_memory()  # between runs, off the user's wait


class _WritesSettledAtRunEnd:
    """Writes the run does not need answered, sent in the background and awaited when the run
    is over (`settle`), before the process says it is done and takes the next one.

    - Prefect's engine starts each run by writing the flow's version and retry policy onto it
      (`update_flow_run`, a PATCH) and waits for the answer before proposing Running, though
      nothing it does next reads them. This sends exactly that write, with this process's pid as
      the run's `infrastructure_pid` (what the UI shows), and lets the run go on. Any other
      `update_flow_run` is awaited as usual.
    - Giving back a concurrency slot (`posegen-background-change`, as the render ends) is one
      API call the run would await before its `update-pose` result and its Completed (20-60 ms
      under load). The slot is released all the same, only the run does not wait; the server
      counts it held until then, so no more changes render at once than the limit. Prefect's
      lease upkeep has stopped by then; if the process dies first, the lease lapses, as a
      killed run's does.

    A failed write is logged and the run's outcome stands: the first only labels the run, and a
    slot not given back frees itself when its lease lapses (`background_change_slot_lease_seconds`).
    """

    _DEFERRED_UPDATE = frozenset({"flow_run_id", "flow_version", "empirical_policy"})

    def __init__(self, client: Any) -> None:
        self._pending: dict[asyncio.Future[Any], str] = {}
        self._loop = asyncio.get_running_loop()
        self._update = client.update_flow_run
        client.update_flow_run = self.update_flow_run

    @contextlib.contextmanager
    def releasing_slots(self) -> Iterator[None]:
        """Route Prefect's async slot release through here while the process serves (undone
        after, for a process that serves in a thread, as tests do). If Prefect renames it,
        runs simply wait for their release again (tests/runtime use the same name)."""
        import prefect.concurrency._asyncio as slots

        release = getattr(slots, "arelease_concurrency_slots_with_lease", None)
        if release is None:
            logger.warning("Prefect's slot release moved; runs keep waiting for it")
            yield
            return
        self._release = release
        slots.arelease_concurrency_slots_with_lease = self.release_slots
        try:
            yield
        finally:
            slots.arelease_concurrency_slots_with_lease = release

    def _defer(self, write: Any, what: str) -> None:
        self._pending[asyncio.ensure_future(write)] = what

    async def update_flow_run(self, *args: Any, **kwargs: Any) -> Any:
        if args or not kwargs.keys() <= self._DEFERRED_UPDATE:
            return await self._update(*args, **kwargs)
        pid = str(os.getpid())
        self._defer(self._update(**kwargs, infrastructure_pid=pid), "record the run's process")
        return None  # the engine ignores the response

    async def release_slots(self, lease_id: Any) -> None:
        if asyncio.get_running_loop() is not self._loop:  # not a run this process serves
            return await self._release(lease_id=lease_id)
        self._defer(self._release(lease_id=lease_id), f"give back concurrency lease {lease_id}")

    async def settle(self) -> None:
        pending, self._pending = self._pending, {}
        for write, what in pending.items():
            try:
                await write
            except Exception:
                logger.warning("could not %s (after its run ended)", what, exc_info=True)


def _skip_suspension_observer() -> None:
    """Prefect 3.9's engine opens an events subscription for every deployment run, in a new
    thread, and waits until it is connected before the run may start (and up to 0.2 s more as
    the run ends): it watches for the run being *suspended* from outside. posegen never suspends
    a background change (its runs are seconds long; stopping one is a cancellation, which the
    pool handles), so its warm processes run without the observer. If Prefect renames it, the
    observer simply stays (tests/runtime check it is still there to skip)."""
    import prefect.flow_engine as engine

    if hasattr(engine, "observe_flow_run_suspension"):
        engine.observe_flow_run_suspension = _no_observer  # type: ignore[assignment]
    else:
        logger.warning("Prefect's suspension observer moved; runs keep paying for it")


def _remember_server_result_storage(seconds: float = 60.0) -> None:
    """Prefect's engine asks the server for its default result storage block (`GET
    /admin/storage`) as every flow run sets up its context, one request on the way to the
    first task. A warm process asks at most once per `seconds` (an operator's change of the
    server's default reaches new runs within a minute). If Prefect renames the function, every
    run simply asks again (tests/runtime check it is still there)."""
    import prefect.results as results

    read = getattr(results, "_read_server_default_result_storage_block_id", None)
    if read is None:
        logger.warning("Prefect's server result-storage lookup moved; runs keep asking")
        return
    remembered: dict[str, Any] = {}

    def remembering() -> Any:
        if time.monotonic() >= remembered.get("until", 0.0):
            remembered["value"] = read()
            remembered["until"] = time.monotonic() + seconds
        return remembered["value"]

    results._read_server_default_result_storage_block_id = remembering


@contextlib.contextmanager
def _no_observer(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


def _die_with_the_pool(pool_pid: int) -> None:
    """Linux: be killed when the serving process dies, as a flow-run subprocess dies with its
    machine. An orphan would go on holding its run and the run's concurrency slot (renewing the
    lease) with nobody to hand it work; killed, its run stops heartbeating and the zombie
    automation and the reconciler mark it Crashed and refund it, and its slot lease lapses.
    (The signal follows the thread that started this process: the pool starts processes from
    its main thread or its dispatcher thread, which both outlive them.)"""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the pipe's EOF ends an idle process; a busy one finishes first
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != pool_pid:  # the pool died before prctl took effect
        os._exit(1)


def _import(path: str) -> Any:
    """`package.module:attribute` → the attribute."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
