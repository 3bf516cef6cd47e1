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
from posegen.runtime.postgres import pdeathsig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # What asks it to stop: SIGTERM for Python children; the PostgreSQL server takes SIGINT
    # (fast shutdown) since SIGTERM would wait for every client to disconnect.
    stop_signal: signal.Signals = signal.SIGTERM
    # Python children's descendants are signalled too (the runner's flow runs have sessions of
    # their own); PostgreSQL stops its own backends, so only the postmaster is signalled.
    owns_descendants: bool = False


@dataclass
class Spawner:
    """Starts children with one environment, log folder and list (appended at once, so a
    Ctrl-C right after a start still stops that child)."""

    env: dict[str, str]
    logs: Path
    children: list[Child]
    # Each child's pid, start time and stop signal, for the next `posegen up` on this home to
    # stop should this one die without stopping them (see stop_leftovers).
    record: Path | None = None

    def __call__(self, name: str, module: str, *args: str) -> Child:
        """`python -m module args` with this interpreter (this venv, whatever PATH says)."""
        return self.command(name, self.argv(module, *args))

    @staticmethod
    def argv(module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def command(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        owns_descendants: bool = False,
        death_signal: signal.Signals | None = None,
        **popen: object,
    ) -> Child:
        """Start `argv` in its own session (so its process group can be signalled as one),
        output in `logs/{name}.log` (the previous run's kept as `{name}.log.1`), signalled
        with `death_signal` (default: its stop signal) should this process die without
        stopping it, so a kill -9 of `posegen up` leaves nothing running."""
        on_death = death_signal or stop_signal
        log = self.logs / f"{name}.log"
        if log.exists():
            log.replace(self.logs / f"{name}.log.1")
        with log.open("wb") as out:
            process = subprocess.Popen(  # type: ignore[call-overload]
                argv,
                cwd=PROJECT_ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: pdeathsig(on_death),
                **popen,
            )
        child = Child(name, process, log, stop_signal, owns_descendants)
        self.children.append(child)
        started = _start_time(process.pid)
        if self.record is not None and started is not None:
            with self.record.open("a") as record:
                record.write(f"{process.pid} {started} {int(stop_signal)} {name}\n")
        return child


def stop_leftovers(record: Path) -> list[str]:
    """Stop what a previous stack on this home left running (its `posegen up` was killed and a
    child outlived it, e.g. a runner stuck retrying a server that is gone, which could pause
    the new stack's deployments): each recorded process that still runs with the same start
    time gets its stop signal, then SIGKILL after STOP_GRACE. Returns their names."""
    try:
        lines = record.read_text().splitlines()
    except OSError:
        return []
    entries: dict[int, tuple[int, signal.Signals, str]] = {}
    for line in lines:
        with suppress(ValueError):
            pid, started, sig, name = line.split(" ", 3)
            entries[int(pid)] = (int(started), signal.Signals(int(sig)), name)
    alive = still_running({pid: started for pid, (started, _, _) in entries.items()})
    for pid in alive:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, entries[pid][1])
    deadline = time.monotonic() + STOP_GRACE
    while still_running(alive) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal(alive, signal.SIGKILL)
    record.unlink(missing_ok=True)
    return [entries[pid][2] for pid in alive]


def terminate(wave: list[Child]) -> None:
    """Signal each child's process group and every descendant: the runner starts each flow
    run in a session of its own, which a group signal would not reach."""
    descendants = {
        pid: started
        for child in wave
        if not child.owns_descendants
        for pid, started in process_tree(child.process.pid).items()
    }
    for child in wave:
        if child.owns_descendants:
            with suppress(ProcessLookupError):
                child.process.send_signal(child.stop_signal)
        else:
            _signal_groups([child], child.stop_signal)
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
