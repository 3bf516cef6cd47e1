"""Warm processes for one deployment's runs: imports and the model load once, not per run.

A served deployment starts every flow run in a fresh subprocess: Prefect's imports, rembg's and
the model load cost 5-10 s before a background change of ~0.3 s even begins (bench/RESULTS.md).
The pool keeps `size` processes that imported the flow and warmed the model once, and hands each
claimed run of its deployment to an idle one. What a served run had, a pooled run keeps:

- the same flow run (the id the API returned, the Prefect UI, the deployment's parameters);
- one process per run at a time, so a crash or a cancellation kills that process, never the pool;
  a killed process is replaced in the background;
- Prefect's state rules: a run is claimed by proposing Pending, so two pools (or a pool and a
  runner) never run it twice, and the crash/cancellation hooks run exactly as the runner runs them.

Runs are found the moment they are scheduled (a Prefect event subscription wakes the pool, and the
event names the run, so the pool claims that run without asking for the deployment's scheduled
runs first) and by a slow poll as a safety net, so a missed event only costs the poll period.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.runner import RunnerDeployment
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.exceptions import Abort
from prefect.flows import Flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Crashed, Pending, State
from prefect.types._datetime import now
from prefect.utilities.engine import propose_state_sync

from posegen.runtime.warm_child import child_main

logger = logging.getLogger("posegen.warm_pool")

# Events that mean "a run may be waiting": a new scheduled run, or one a retry rescheduled.
_WAKE_EVENTS = ["prefect.flow-run.Scheduled", "prefect.flow-run.AwaitingRetry"]
# How long a stopping pool lets in-flight runs finish before their processes are terminated.
_STOP_GRACE_SECONDS = 30.0


@dataclass
class _Worker:
    """One warm process and the run it is executing, if any."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    run: FlowRun | None = None
    started_at: float = field(default_factory=time.monotonic)


class WarmPool:
    """Serve one deployment's runs from `size` warm processes (see the module docstring)."""

    def __init__(
        self,
        flow: Flow[Any, Any],
        deployment: RunnerDeployment,
        *,
        flow_path: str,
        warm_up: str | None = None,
        size: int = 3,
        poll_seconds: float = 2.0,
        cancel_check_seconds: float = 1.0,
    ) -> None:
        self.flow = flow
        self.deployment = deployment
        self.flow_path = flow_path
        self.warm_up = warm_up
        self.size = size
        self.poll_seconds = poll_seconds
        self.cancel_check_seconds = cancel_check_seconds
        self.deployment_id: uuid.UUID | None = None
        self._workers: list[_Worker] = []
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)
        self._stop_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._events_thread: threading.Thread | None = None
        # Runs an event named, to claim by id (dispatcher thread only), and the runs this pool
        # claimed last (a run's later events are no news).
        self._named: list[str] = []
        self._claimed: collections.deque[str] = collections.deque(maxlen=64)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the deployment, start the warm processes and the dispatcher thread."""
        # Served deployments are paused when their runner stops; this pool serves it again.
        self.deployment.paused = False
        self.deployment_id = self.deployment.apply()
        self._prepare_process_environment()
        for _ in range(self.size):
            self._spawn()
        self._thread = threading.Thread(target=self._dispatch, name="warm-pool", daemon=True)
        self._thread.start()
        self._events_thread = threading.Thread(
            target=lambda: asyncio.run(self._listen_for_runs()),
            name="warm-pool-events",
            daemon=True,
        )
        self._events_thread.start()

    def stop(self, grace: float = _STOP_GRACE_SECONDS) -> None:
        """Take no new runs; let running ones finish within `grace`, then end every process.

        A run still going after the grace is terminated; its process marks it crashed, and the
        crash hook refunds it (as when a runner stops mid-run).
        """
        self._stop_deadline = time.monotonic() + grace
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=grace + 10)

    def _wake(self, flow_run_id: str | None = None) -> None:
        """Make the dispatcher claim run `flow_run_id`, or look for runs (None)."""
        with contextlib.suppress(OSError):
            self._wake_writer.send(flow_run_id)

    # -- processes ------------------------------------------------------------------------------

    def _prepare_process_environment(self) -> None:
        """What every process this pool starts inherits (spawned processes copy os.environ)."""
        _skip_tls_bundle_over_plain_http()
        # N processes each running onnxruntime with a thread per core oversubscribe the cores
        # N times when changes arrive together; share the cores out instead.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        os.environ.setdefault("POSEGEN_ONNX_THREADS", str(max(1, cores // self.size)))

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=child_main,
            args=(child, self.flow_path, self.warm_up, os.getpid()),
            name="posegen-warm",
            daemon=False,
        )
        process.start()
        child.close()
        self._workers.append(_Worker(process=process, conn=parent))

    def _retire(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)

    # -- the dispatcher (one thread) --------------------------------------------------------------

    def _dispatch(self) -> None:
        with get_client(sync_client=True) as client:
            next_poll = 0.0
            next_cancel_check = time.monotonic() + self.cancel_check_seconds
            while not (self._stopping.is_set() and not self._busy()):
                if self._stopping.is_set() and self._grace_over():
                    break
                try:
                    woken = self._handle_messages(client, timeout=self._timeout(next_poll))
                    if not self._stopping.is_set() and self._named:
                        self._claim_named(client)
                    if not self._stopping.is_set() and (woken or time.monotonic() >= next_poll):
                        self._claim_runs(client)
                        next_poll = time.monotonic() + self.poll_seconds
                    if time.monotonic() >= next_cancel_check:
                        self._check_cancellations(client)
                        next_cancel_check = time.monotonic() + self.cancel_check_seconds
                except Exception:
                    # This thread is the pool: if it ended, its processes would die with it
                    # and nothing would claim runs. Log, breathe, go on.
                    logger.exception("warm pool dispatcher error; continuing")
                    time.sleep(1.0)
            self._shut_down(client)

    def _busy(self) -> bool:
        return any(worker.run is not None for worker in self._workers)

    def _grace_over(self) -> bool:
        return time.monotonic() >= self._stop_deadline

    def _timeout(self, next_poll: float) -> float:
        return max(0.0, min(next_poll - time.monotonic(), self.cancel_check_seconds))

    def _handle_messages(self, client: Any, *, timeout: float) -> bool:
        """Wait for a wake-up or a message from a process; True when runs may be waiting."""
        conns: list[Any] = [self._wake_reader, *(worker.conn for worker in self._workers)]
        sentinels = [worker.process.sentinel for worker in self._workers]
        woken = False
        for ready in wait(conns + sentinels, timeout=timeout):
            if ready is self._wake_reader:
                while self._wake_reader.poll():
                    run_id = self._wake_reader.recv()
                    if run_id is None:
                        woken = True
                    elif run_id not in self._claimed:
                        self._named.append(run_id)
                continue
            worker = self._worker_for(ready)
            if worker is None:
                continue
            if ready is worker.conn and self._receive(worker):
                woken = True
            elif not worker.process.is_alive():
                self._on_process_died(client, worker)
                woken = True
        return woken

    def _worker_for(self, ready: Any) -> _Worker | None:
        for worker in self._workers:
            if ready is worker.conn or ready == worker.process.sentinel:
                return worker
        return None

    def _receive(self, worker: _Worker) -> bool:
        """Read one message; True when the worker became free."""
        try:
            kind, *_ = worker.conn.recv()
        except (EOFError, OSError):
            return False  # the process is gone; its sentinel says so next
        if kind == "ready":
            worker.ready = True
            return True
        if kind == "done":
            worker.run = None
            return True
        return False

    def _idle(self) -> list[_Worker]:
        return [worker for worker in self._workers if worker.ready and worker.run is None]

    def _claim_runs(self, client: Any) -> None:
        idle = self._idle()
        if not idle or self.deployment_id is None:
            return
        try:
            runs = client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=[self.deployment_id], scheduled_before=now("UTC"), limit=len(idle)
            )
        except Exception:
            logger.warning("could not read scheduled runs; retrying", exc_info=True)
            return
        for run in runs:
            if not idle:
                break
            if self._claim(client, run):
                self._hand_over(client, run, idle.pop(0))

    def _claim_named(self, client: Any) -> None:
        """Claim the runs the events named, by id. One this pool has no idle process for waits
        as any run does: the next free process looks for runs."""
        named, self._named = self._named, []
        for run_id in named:
            idle = self._idle()
            if not idle:
                return
            if run_id in self._claimed:
                continue
            run = self._claimable(client, uuid.UUID(run_id))
            if run is not None and self._claim(client, run):
                self._hand_over(client, run, idle[0])

    def _claimable(self, client: Any, run_id: uuid.UUID) -> FlowRun | None:
        """The run, if it is this deployment's, Scheduled and due (as the query would find)."""
        try:
            run = client.read_flow_run(run_id)
        except Exception:
            logger.warning("could not read flow run %s", run_id, exc_info=True)
            return None
        state = run.state
        if run.deployment_id != self.deployment_id or state is None or not state.is_scheduled():
            return None
        due = state.state_details.scheduled_time
        return None if due is not None and due > now("UTC") else run

    def _hand_over(self, client: Any, run: FlowRun, worker: _Worker) -> None:
        self._claimed.append(str(run.id))
        worker.run = run
        try:
            # The claimed run itself, so the process need not read it back.
            worker.conn.send(run.model_dump_json())
        except OSError:
            self._on_process_died(client, worker)

    def _claim(self, client: Any, run: FlowRun) -> bool:
        """Propose Pending: the server accepts it for exactly one claimant (`run.state` is
        then the accepted Pending state)."""
        try:
            state = propose_state_sync(client, Pending(), flow_run_id=run.id)
        except Abort:
            return False
        except Exception:
            logger.warning("could not claim flow run %s", run.id, exc_info=True)
            return False
        run.state = state
        return state.is_pending()

    # -- crashes and cancellations ------------------------------------------------------------

    def _on_process_died(self, client: Any, worker: _Worker) -> None:
        """A process ended under a run: mark it Crashed and run the crash hooks, once; replace
        the process."""
        run = worker.run
        self._retire(worker)
        if run is not None:
            code = worker.process.exitcode
            self._finish_run(
                client, run, Crashed(message=f"The warm process running this run died ({code}).")
            )
        if not self._stopping.is_set():
            self._spawn()

    def _check_cancellations(self, client: Any) -> None:
        running = {worker.run.id: worker for worker in self._workers if worker.run is not None}
        if not running:
            return
        try:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(running)))
            )
        except Exception:
            logger.warning("could not read running flow runs' states", exc_info=True)
            return
        for run in runs:
            if run.state is not None and run.state.is_cancelling():
                worker = running[run.id]
                worker.run = None
                self._retire(worker)
                self._finish_run(client, run, Cancelled(message="Cancelled while running."))
                if not self._stopping.is_set():
                    self._spawn()

    def _finish_run(self, client: Any, run: FlowRun, state: State[Any]) -> None:
        """Set the final state the process could not, then run the matching hooks."""
        try:
            client.set_flow_run_state(run.id, state, force=True)
        except Exception:
            logger.warning("could not set %s on flow run %s", state.type, run.id, exc_info=True)
        hooks = (
            self.flow.on_cancellation_hooks if state.is_cancelled() else self.flow.on_crashed_hooks
        )
        for hook in hooks or []:
            try:
                hook(self.flow, run, state)
            except Exception:
                logger.exception("hook %r failed for flow run %s", hook, run.id)

    def _shut_down(self, client: Any) -> None:
        for worker in list(self._workers):
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + 10
        for worker in list(self._workers):
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            if worker.process.is_alive():
                self._on_process_died(client, worker)
            else:
                self._retire(worker)

    # -- wake-ups ---------------------------------------------------------------------------------

    async def _listen_for_runs(self) -> None:
        """Wake the dispatcher when a run of this deployment is scheduled (tens of ms)."""
        event_filter = EventFilter(
            event=EventNameFilter(name=_WAKE_EVENTS),
            related=EventRelatedFilter(
                resources_in_roles=[(f"prefect.deployment.{self.deployment_id}", "deployment")]
            ),
        )
        while not self._stopping.is_set():
            try:
                async with get_events_subscriber(filter=event_filter) as subscriber:
                    async for event in subscriber:
                        # A Scheduled event names a new run; an AwaitingRetry one, a run to
                        # look for again when due.
                        scheduled = event.event == "prefect.flow-run.Scheduled"
                        run_id = event.resource.id.removeprefix("prefect.flow-run.")
                        self._wake(run_id if scheduled else None)
                        if self._stopping.is_set():
                            return
            except Exception:
                # The poll still finds runs; try the subscription again shortly.
                logger.debug("event subscription dropped; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)


def _skip_tls_bundle_over_plain_http() -> None:
    """Prefect builds a TLS context with the full CA bundle for every API client it creates
    (one per task run, ~50 ms each on this machine). Over a plain-http API (the loopback server
    of `posegen up`) no TLS happens at all, so the processes this pool starts skip loading it;
    they inherit this environment. An https API keeps full verification."""
    if (PREFECT_API_URL.value() or "").startswith("http://"):
        os.environ.setdefault("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true")
