"""Child processes of the stack: started in their own session with a log file, found again
by pid and start time (so a reused pid is never signalled), and stopped with escalation.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from posegen.runtime.console import console

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Spawner:
    """Starts children with one environment, log folder and list (appended at once, so a
    Ctrl-C right after a start still stops that child)."""

    env: dict[str, str]
    logs: Path
    children: list[Child]

    def __call__(self, name: str, module: str, *args: str) -> Child:
        """`python -m module args` with this interpreter (this venv, whatever PATH says), in
        its own session (so its process group can be signalled as one), output in
        `logs/{name}.log`; the previous run's log is kept as `{name}.log.1`."""
        log = self.logs / f"{name}.log"
        if log.exists():
            log.replace(self.logs / f"{name}.log.1")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child


def terminate(wave: list[Child]) -> None:
    """Signal each child's process group and every descendant: the runner starts each flow
    run in a session of its own, which a group signal would not reach."""
    descendants = {
        pid: started for child in wave for pid, started in process_tree(child.process.pid).items()
    }
    _signal_groups(wave, signal.SIGTERM)
    _signal(descendants, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and (
        any(child.process.poll() is None for child in wave) or still_running(descendants)
    ):
        time.sleep(0.1)
    left = [child.name for child in wave if child.process.poll() is None]
    stragglers = still_running(descendants)
    if left or stragglers:
        console.print(
            f"[yellow]killing what did not stop within {STOP_GRACE:.0f} s: "
            f"{', '.join(left) or 'flow-run processes'}[/yellow]"
        )
        _signal_groups(wave, signal.SIGKILL)
        _signal(stragglers, signal.SIGKILL)
    for child in wave:
        child.process.wait()


def _signal_groups(wave: list[Child], sig: signal.Signals) -> None:
    for child in wave:
        # Each child leads its own session, so its pid is its process group id.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)


def _signal(targets: Mapping[int, int], sig: signal.Signals) -> None:
    for pid in still_running(targets):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def still_running(targets: Mapping[int, int]) -> dict[int, int]:
    """The targets still running: same pid *and* same start time, so a pid reused by an
    unrelated process is never signalled."""
    return {pid: started for pid, started in targets.items() if _start_time(pid) == started}


def _start_time(pid: int) -> int | None:
    """The process's start time from /proc (Linux); None when it is gone or not readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished; only its parent's wait is missing
        return None
    return int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """Every process below `root` (children, their children, …) as pid → start time, from
    /proc (empty where there is none); with `still_running`, a check that survives pid reuse."""
    children: dict[int, list[int]] = {}
    with suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree: dict[int, int] = {}
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        started = _start_time(pid)
        if started is not None:
            tree[pid] = started
        pending.extend(children.get(pid, []))
    return tree


def port_taken(host: str, port: int) -> bool:
    """Bind the way the servers will (SO_REUSEADDR, as uvicorn does), so a port left in
    TIME_WAIT by our own last run does not count as taken, but a listener does."""
    for family, kind, proto, _name, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError:
                return True
    return False


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
