"""Watching the stack as one: wait for a child to become ready, notice one that dies, stop
them all in order on Ctrl-C/SIGTERM (runner and API first, then the Prefect server, the
embedded PostgreSQL last).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from posegen.runtime.console import console
from posegen.runtime.processes import Child, terminate

# A fresh home migrates two databases; a shared 2-core machine can take minutes.
STARTUP_TIMEOUT = 180.0
_POLL = 0.25
_LOG_TAIL_LINES = 25
# What signal.signal() returns and accepts (typeshed's private `_HANDLER`).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Stopped(BaseException):
    """Raised by the signal handler, so a Ctrl-C or SIGTERM interrupts any startup step."""


class StartupFailed(Exception):
    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log = log


class StopSignals:
    """While armed, SIGINT and SIGTERM raise Stopped (once), so a Ctrl-C interrupts any
    startup step or the supervision; disarmed, they are ignored, so the shutdown always runs to
    its end (it escalates to SIGKILL by itself). The previous handlers come back on exit."""

    def __init__(self) -> None:
        self._armed = False
        self._previous: dict[signal.Signals, _Handler] = {}

    def __enter__(self) -> StopSignals:
        self._armed = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._armed = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def disarm(self) -> None:
        self._armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            raise Stopped


def wait_until(ready: Callable[[], bool], what: str, owner: Child, children: list[Child]) -> None:
    """Poll `ready` until it holds; fail with the log of whichever child died meanwhile, or of
    `owner` (the child that should have made it true) after STARTUP_TIMEOUT."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        for child in children:
            if child.process.poll() is not None:
                raise StartupFailed(
                    f"{child.name} exited with code {child.process.returncode} while waiting "
                    f"for {what}; its log is {child.log}",
                    child.log,
                )
        if ready():
            return
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"{what} was not ready after {STARTUP_TIMEOUT:.0f} s; see {owner.log}", owner.log
            )
        time.sleep(_POLL)


def supervise(children: list[Child]) -> Child:
    """Wait until a child exits (returned); Ctrl-C/SIGTERM interrupts this with Stopped."""
    while True:
        for child in children:
            if child.process.poll() is not None:
                return child
        time.sleep(0.5)


_PREFECT = ("prefect-server", "prefect-services")
_DATABASE = ("postgres",)


def stop_all(children: list[Child]) -> None:
    """Stop in reverse start order in three waves — runner and API, then the Prefect server,
    then PostgreSQL (which everything before it writes to) — each with its stop signal first,
    SIGKILL for whatever is left after STOP_GRACE seconds. Between the first two waves, runs
    the runner left behind are marked Crashed while the server still answers."""
    server = [child for child in children if child.name in _PREFECT]
    database = [child for child in children if child.name in _DATABASE]
    others = [child for child in reversed(children) if child not in server + database]
    if others:
        terminate(others)
    live = [child for child in server if child.name == "prefect-server"]
    if live and live[0].process.poll() is None and any(c.name == "runner" for c in others):
        _crash_orphaned_runs()
    for wave in (server, database):
        if wave:
            terminate(wave)


def _crash_orphaned_runs() -> None:
    """Mark deployment runs still Pending/Running as Crashed once the runner is gone.

    The runner is the only executor of this stack's deployments, so such a run has no process
    any more; a run killed before its engine was up (still loading, say) cannot report that
    itself and would stay Pending forever, its charge never reconciled. Runs without a
    deployment (`posegen change-background`, `make demo`) run in other processes: left alone.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    in_flight = FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(is_null_=False),
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
            )
        ),
    )
    try:
        with get_client(sync_client=True) as client:
            for run in client.read_flow_runs(flow_run_filter=in_flight):
                client.set_flow_run_state(
                    run.id,
                    Crashed(message="`posegen up` stopped while this run was in flight"),
                    force=True,
                )
                console.print(f"marked flow run {run.name} ({run.id}) Crashed")
    except Exception as exc:  # shutting down regardless; say why the runs may stay open
        console.print(f"[yellow]could not mark in-flight runs Crashed:[/yellow] {exc}")


def print_tail(log: Path) -> None:
    try:
        lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return
    console.print(f"── last lines of {log} ──", markup=False, highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False)
