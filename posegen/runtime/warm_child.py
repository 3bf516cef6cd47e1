"""The process a warm pool keeps: import once, warm up, then run one flow run at a time."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import sys
import uuid
from multiprocessing.connection import Connection
from typing import Any

from posegen.imaging.heap import release_freed_memory

logger = logging.getLogger("posegen.warm_pool")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_main(conn: Connection, flow_path: str, warm_up: str | None, pool_pid: int) -> None:
    """Run the flow runs the pool sends (their ids), one at a time, until told to stop.

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
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    conn.send(("ready", os.getpid()))
    with get_client(sync_client=True) as client:
        while not state["stop"]:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            state["busy"] = True
            try:
                flow_run = client.read_flow_run(uuid.UUID(message))
                client.update_flow_run(flow_run.id, infrastructure_pid=str(os.getpid()))
                result = run_flow(flow, flow_run=flow_run, return_type="state")
                if asyncio.iscoroutine(result):
                    asyncio.run(result)
            except BaseException:
                logger.exception("flow run %s ended with an engine error", message)
            finally:
                state["busy"] = False
            try:
                conn.send(("done", message))
            except OSError:
                return
            release_freed_memory()  # between runs, off the user's wait


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
