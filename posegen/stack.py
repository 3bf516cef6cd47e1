"""`posegen up`: the local stack — Prefect server, the runner serving every deployment, the API —
started in order, watched as one, and stopped together.

Each child runs in its own process group with its output in `$POSEGEN_HOME/logs/`, so the
terminal shows only this module's progress, and a Ctrl-C reaches only this process, which then
stops the children in order: runner and API first (the runner pauses its deployments and ends its
flow runs, which needs the Prefect server), the Prefect server last.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console

from posegen.api.paths import BASE_PATH
from posegen.config import Settings, get_settings, reset_settings

if TYPE_CHECKING:
    from posegen.demo import DemoData

__all__ = ["process_tree", "run_stack", "stack_environment", "still_running"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREFECT_HOST = "127.0.0.1"
STARTUP_TIMEOUT = 90.0
STOP_GRACE = 10.0
_POLL = 0.25
_LOG_TAIL_LINES = 25
# The runner asks Prefect for scheduled runs every PREFECT_RUNNER_POLL_FREQUENCY seconds; at
# Prefect's default (10) a background change would wait up to 10 s before it even starts.
_RUNNER_POLL_SECONDS = "2"

# What signal.signal() returns and accepts (typeshed's private `_HANDLER`).
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# soft_wrap: paths, tokens and commands stay on one line, in a terminal or a pipe.
console = Console(soft_wrap=True)


class _Stopped(BaseException):
    """Raised by the signal handler, so a Ctrl-C or SIGTERM interrupts any startup step."""


class _StartupFailed(Exception):
    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log = log


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def stack_environment(
    settings: Settings,
    *,
    database_url: str | None = None,
    storage_url: str | None = None,
) -> dict[str, str]:
    """The environment every child gets: one POSEGEN_HOME (absolute, since the runner's flow
    runs start elsewhere), Prefect pointed at the local server with its state under it, offline."""
    home = settings.home_dir
    env = dict(os.environ)
    env.update(
        {
            "POSEGEN_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": settings.local_prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": _RUNNER_POLL_SECONDS,
            # Heartbeats let the zombie automation mark a killed run Crashed (then refunded).
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.flows_heartbeat_seconds),
            # Children write to log files: unbuffered, so a crash leaves its last words there.
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("NUMBA_CACHE_DIR", str(home / "numba-cache"))
    env.setdefault("REMBG_HOME", str(settings.models_dir))
    if database_url:
        env["POSEGEN_DATABASE_URL"] = database_url
    if storage_url:
        env["POSEGEN_STORAGE_URL"] = storage_url
    return env


def run_stack(database_url: str | None, storage_url: str | None) -> int:
    """Bring the stack up, print how to use it, and supervise until Ctrl-C/SIGTERM or a child
    exits; 0 after a requested stop, 1 when startup failed or a child died."""
    started = time.monotonic()
    previous_url = os.environ.get("PREFECT_API_URL")
    env = stack_environment(get_settings(), database_url=database_url, storage_url=storage_url)
    # This process migrates, seeds and creates the Prefect limits itself, through the same
    # settings as its children: os.environ is how posegen's and Prefect's settings both see
    # them, and it must be set before prefect is first imported (it reads them at import).
    os.environ.update(env)
    reset_settings()
    settings = get_settings()
    if previous_url and previous_url != settings.local_prefect_api_url:
        console.print(
            f"[yellow]note:[/yellow] PREFECT_API_URL={previous_url} is ignored; "
            f"`posegen up` runs its own Prefect server at {settings.local_prefect_api_url}"
        )
    children: list[_Child] = []
    with _StopSignals() as signals:
        failure, died = _run_until_stopped(signals, settings, env, children, started)
        if failure is not None:
            console.print(f"[red]posegen up failed:[/red] {failure.message}")
            if failure.log is not None:
                _print_tail(failure.log)
        elif died is not None:
            console.print(
                f"[red]{died.name} exited unexpectedly (code {died.process.returncode})[/red]; "
                "stopping everything"
            )
            _print_tail(died.log)
        if children:
            console.print(f"stopping (up to {2 * STOP_GRACE:.0f} s)…")
            _stop_all(children)
            console.print("stopped")
    return 1 if failure is not None or died is not None else 0


def _run_until_stopped(
    signals: _StopSignals,
    settings: Settings,
    env: dict[str, str],
    children: list[_Child],
    started: float,
) -> tuple[_StartupFailed | None, _Child | None]:
    """Start, print, supervise; returns why it ended: a startup failure, the child that died,
    or neither (Ctrl-C/SIGTERM). Signals are disarmed before it returns, so the shutdown that
    follows cannot be interrupted half-way and leave children running."""
    try:
        try:
            _refuse_taken_ports(settings)
            demo = _start(settings, env, children)
            console.print(
                f"[bold green]posegen is ready[/bold green] "
                f"(started in {time.monotonic() - started:.1f} s)"
            )
            _print_usage(settings, demo)
            return None, _supervise(children)
        finally:
            signals.disarm()
    except _Stopped:
        return None, None
    except _StartupFailed as failure:
        return failure, None
    except Exception as exc:  # whatever broke, the children started so far must be stopped
        console.print_exception()
        return _StartupFailed(f"{type(exc).__name__}: {exc}"), None


def _start(settings: Settings, env: dict[str, str], children: list[_Child]) -> DemoData:
    """Start everything, overlapping what does not depend on each other: the API and the demo
    seed while the Prefect server boots (its ~15 s are most of the startup); the runner last,
    since serving creates deployments on the server."""
    from posegen.db.migrate import upgrade
    from posegen.demo import seed_demo
    from posegen.imaging.fetch_models import fetch_model
    from posegen.imaging.model_files import has_model
    from posegen.storage import get_storage

    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.print(f"state in {settings.home_dir}, logs in {logs}")
    if not has_model():
        # /health reports the model, and every change needs it: fetch it before anything starts.
        console.print(f"fetching the segmentation model {settings.rembg_model}")
        fetch_model(settings.rembg_model)
    upgrade()
    get_storage().ensure_bucket()
    settings.jwt_key()  # made once here, before the API could race this process to create it
    console.print(f"database {settings.database} migrated; storage {settings.storage}")
    prefect_url = settings.local_prefect_api_url
    spawn = _Spawner(env, logs, children)
    prefect_bind = ["--host", PREFECT_HOST, "--port", str(settings.prefect_port)]
    server = spawn("prefect-server", "prefect", "server", "start", *prefect_bind)
    # An open SSE stream would otherwise hold uvicorn's shutdown forever.
    api_bind = [
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
        "--timeout-graceful-shutdown",
        "5",
    ]
    api = spawn("api", "uvicorn", "posegen.api.app:app", *api_bind)
    console.print(f"starting the Prefect server ({prefect_url}) and the API")
    demo = seed_demo()
    from posegen.orchestration import ensure_limits_sync  # imports prefect: while it boots

    _wait_until(lambda: _answers(f"{prefect_url}/health"), "the Prefect server", server, children)
    ensure_limits_sync()
    runner_started = datetime.now(UTC)
    runner = spawn("runner", "deployments.serve")
    console.print("Prefect server up; starting the runner")
    api_health = f"http://{_client_host(settings.api_host)}:{settings.api_port}{BASE_PATH}/health"
    _wait_until(lambda: _answers(api_health), "the API", api, children)
    from prefect.utilities.asyncutils import run_coro_as_sync

    from posegen.orchestration import ensure_automations

    # The automations point at the reconciler's deployment: wait for it as well.
    for deployment in (
        settings.deployment_background_change,
        settings.deployment_refund_reconciler,
    ):
        _wait_until(
            lambda name=deployment: _deployment_served(prefect_url, name, since=runner_started),
            f"the deployment {deployment}",
            runner,
            children,
        )

    for name in run_coro_as_sync(ensure_automations()) or []:
        console.print(f"automation: {name}")
    return demo


@dataclass
class _Spawner:
    """Starts children with one environment, log folder and list (appended at once, so a
    Ctrl-C right after a start still stops that child)."""

    env: dict[str, str]
    logs: Path
    children: list[_Child]

    def __call__(self, name: str, module: str, *args: str) -> _Child:
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
        child = _Child(name, process, log)
        self.children.append(child)
        return child


def _wait_until(
    ready: Callable[[], bool], what: str, owner: _Child, children: list[_Child]
) -> None:
    """Poll `ready` until it holds; fail with the log of whichever child died meanwhile, or of
    `owner` (the child that should have made it true) after STARTUP_TIMEOUT."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        for child in children:
            if child.process.poll() is not None:
                raise _StartupFailed(
                    f"{child.name} exited with code {child.process.returncode} while waiting "
                    f"for {what}; its log is {child.log}",
                    child.log,
                )
        if ready():
            return
        if time.monotonic() > deadline:
            raise _StartupFailed(
                f"{what} was not ready after {STARTUP_TIMEOUT:.0f} s; see {owner.log}", owner.log
            )
        time.sleep(_POLL)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _deployment_served(prefect_url: str, name: str, *, since: datetime) -> bool:
    """The runner has (re)applied the deployment: it exists, is not paused, and was updated
    after the runner started. The row alone proves nothing: it survives from the last run,
    paused by that runner's shutdown."""
    try:
        response = httpx.get(f"{prefect_url}/deployments/name/{name}", timeout=2.0)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    body = response.json()
    updated = datetime.fromisoformat(body["updated"])
    # A little slack for clock rounding between this process and the server's timestamps.
    return not body.get("paused") and updated >= since - timedelta(seconds=1)


def _client_host(host: str) -> str:
    """Where to reach a server bound to `host`: a wildcard bind is reachable on loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _refuse_taken_ports(settings: Settings) -> None:
    for what, host, port in (
        ("the Prefect server", PREFECT_HOST, settings.prefect_port),
        ("the API", settings.api_host, settings.api_port),
    ):
        if _port_taken(host, port):
            raise _StartupFailed(
                f"{host}:{port} (for {what}) is already in use by another program. Stop it "
                "(is another `posegen up` running?) or choose other ports with "
                "POSEGEN_PREFECT_PORT / POSEGEN_API_PORT."
            )


def _port_taken(host: str, port: int) -> bool:
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


def _supervise(children: list[_Child]) -> _Child:
    """Wait until a child exits (returned); Ctrl-C/SIGTERM interrupts this with _Stopped."""
    while True:
        for child in children:
            if child.process.poll() is not None:
                return child
        time.sleep(0.5)


def _stop_all(children: list[_Child]) -> None:
    """Stop in reverse start order in two waves — runner and API, then the Prefect server —
    each SIGTERM first, SIGKILL for whatever is left after STOP_GRACE seconds. Between the
    waves, runs the runner left behind are marked Crashed while the server still answers."""
    server = [child for child in children if child.name == "prefect-server"]
    others = [child for child in reversed(children) if child.name != "prefect-server"]
    if others:
        _terminate(others)
    if server and server[0].process.poll() is None and any(c.name == "runner" for c in others):
        _crash_orphaned_runs()
    if server:
        _terminate(server)


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


def _terminate(wave: list[_Child]) -> None:
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


def _signal_groups(wave: list[_Child], sig: signal.Signals) -> None:
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


class _StopSignals:
    """While armed, SIGINT and SIGTERM raise _Stopped (once), so a Ctrl-C interrupts any
    startup step or the supervision; disarmed, they are ignored, so the shutdown always runs to
    its end (it escalates to SIGKILL by itself). The previous handlers come back on exit."""

    def __init__(self) -> None:
        self._armed = False
        self._previous: dict[signal.Signals, _Handler] = {}

    def __enter__(self) -> _StopSignals:
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
            raise _Stopped


def _print_tail(log: Path) -> None:
    try:
        lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return
    console.print(f"── last lines of {log} ──", markup=False, highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _print_usage(settings: Settings, demo: DemoData) -> None:
    """URLs, demo tokens and copy-paste curl commands; one line per value (soft wrap), so a
    token is never broken across lines, on a terminal or in a pipe."""
    from posegen.demo import DEMO_ADMIN_EMAIL, DEMO_COLOR, DEMO_USER_EMAIL

    api = settings.public_url
    pose_url = f"{api}{BASE_PATH}/poses/{demo.pose_id}"
    auth = f'-H "Authorization: Bearer {demo.user_token}"'
    body = f'{{"backgroundMode":"solid_color","backgroundColor":"{DEMO_COLOR}"}}'
    rows = [
        ("API docs", f"{api}/docs"),
        ("Prefect UI", f"http://{PREFECT_HOST}:{settings.prefect_port}"),
        ("logs", str(settings.home_dir / "logs")),
        ("demo admin", DEMO_ADMIN_EMAIL),
        ("admin token", demo.admin_token),
        ("demo user", f"{DEMO_USER_EMAIL} ({demo.credits} credits)"),
        ("user token", demo.user_token),
        ("demo pose", str(demo.pose_id)),
    ]
    lines = [f"  {label:<12} {value}" for label, value in rows]
    lines += [
        "",
        f"Change the demo pose's background to a solid colour ({DEMO_COLOR}):",
        f"curl -sS -X POST {pose_url}/background \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        f"  -d '{body}'",
        "Then read the pose (status ready and backgroundChanged true when done; imageUrl is the",
        "new image, fetched with the same token):",
        f"curl -sS {pose_url} \\",
        f"  {auth}",
        "",
        "Export the demo generation to Instagram story and Shopee sizes (a ZIP when done):",
        f"curl -sS -X POST {api}{BASE_PATH}/generations/{demo.generation_id}/exports \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        """  -d '{"formats":["instagram_story","shopee_product"]}'""",
        f"curl -sS {api}{BASE_PATH}/generations/{demo.generation_id}/results \\",
        f"  {auth}",
        "",
        "Ask the community for a new pose (admins approve it at /admin/pose-requests):",
        f"curl -sS -X POST {api}{BASE_PATH}/requests \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        """  -d '{"poseName":"Hands on hips, looking left","description":"For outfit shots"}'""",
        "",
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
