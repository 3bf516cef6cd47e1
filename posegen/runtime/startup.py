"""`posegen up`: the local stack — the embedded PostgreSQL, Prefect server, the runner serving
every deployment, the API — started in order, watched as one, and stopped together.

Each child runs in its own process group with its output in `$POSEGEN_HOME/logs/`, so the
terminal shows only this module's progress, and a Ctrl-C reaches only this process, which then
stops the children in order: runner and API first (the runner pauses its deployments and ends its
flow runs, which needs the Prefect server), then the Prefect server, PostgreSQL last.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from posegen.api.paths import BASE_PATH
from posegen.config import Settings, get_settings, reset_settings
from posegen.runtime import postgres
from posegen.runtime.console import console
from posegen.runtime.processes import (
    STOP_GRACE,
    Child,
    Spawner,
    answers,
    port_taken,
    stop_leftovers,
)
from posegen.runtime.supervisor import (
    StartupFailed,
    Stopped,
    StopSignals,
    print_tail,
    stop_all,
    supervise,
    wait_until,
)
from posegen.runtime.usage import print_usage

if TYPE_CHECKING:
    from posegen.demo import DemoData

__all__ = [
    "prefect_server_environment",
    "run_stack",
    "stack_environment",
    "start_postgres",
    "start_prefect",
]

PREFECT_HOST = "127.0.0.1"
# The runner asks Prefect for scheduled runs every PREFECT_RUNNER_POLL_FREQUENCY seconds; at
# Prefect's default (10) a background change would wait up to 10 s before it even starts.
_RUNNER_POLL_SECONDS = "2"
# The embedded server's owner lock (posegen/runtime/postgres.py), held until this process exits.
_owner_locks: list[IO[str]] = []
_PREFECT_DATABASE_SETTINGS = (
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
)


def stack_environment(
    settings: Settings,
    *,
    database_url: str | None = None,
    storage_url: str | None = None,
    prefect_api_url: str | None = None,
) -> dict[str, str]:
    """The environment every child gets: one POSEGEN_HOME (absolute, since the runner's flow
    runs start elsewhere), Prefect pointed at the stack's server (the local one unless
    `prefect_api_url` names another) with its state under it, offline."""
    home = settings.home_dir
    env = dict(os.environ)
    env.update(
        {
            "POSEGEN_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": prefect_api_url or settings.local_prefect_api_url,
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


def prefect_server_environment(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The local Prefect server's own settings: its database (the embedded PostgreSQL's
    `prefect`, unless PREFECT_SERVER_DATABASE_CONNECTION_URL names one) and, with more than
    one API worker, Redis for what the workers and the services process must share."""
    server = dict(env)
    if not any(server.get(name) for name in _PREFECT_DATABASE_SETTINGS):
        server["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.embedded_database_url(
            "prefect", driver="asyncpg"
        )
    if settings.prefect_workers > 1:
        host, port, db = settings.redis
        server.update(
            {
                "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
                "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
                "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
                "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
                "PREFECT_REDIS_MESSAGING_HOST": host,
                "PREFECT_REDIS_MESSAGING_PORT": str(port),
                "PREFECT_REDIS_MESSAGING_DB": str(db),
                # The background services' task queue, shared by the API workers that add to
                # it and the services process that works it.
                "PREFECT_SERVER_DOCKET_URL": settings.redis_url,
            }
        )
    return server


def run_stack(
    database_url: str | None, storage_url: str | None, prefect_workers: int | None = None
) -> int:
    """Bring the stack up, print how to use it, and supervise until Ctrl-C/SIGTERM or a child
    exits; 0 after a requested stop, 1 when startup failed or a child died.

    PREFECT_API_URL, when set, wins: the stack uses that Prefect server and starts none."""
    started = time.monotonic()
    external_prefect = os.environ.get("PREFECT_API_URL") or None
    if prefect_workers is not None:
        os.environ["POSEGEN_PREFECT_WORKERS"] = str(prefect_workers)
        reset_settings()
    env = stack_environment(
        get_settings(),
        database_url=database_url,
        storage_url=storage_url,
        prefect_api_url=external_prefect,
    )
    # This process migrates, seeds and creates the Prefect limits itself, through the same
    # settings as its children: os.environ is how posegen's and Prefect's settings both see
    # them, and it must be set before prefect is first imported (it reads them at import).
    os.environ.update(env)
    reset_settings()
    settings = get_settings()
    if external_prefect:
        console.print(f"Prefect API {external_prefect} (PREFECT_API_URL): no local Prefect server")
    children: list[Child] = []
    try:
        home_lock = _lock_home(settings)
    except StartupFailed as failure:
        console.print(f"[red]posegen up failed:[/red] {failure.message}")
        return 1
    with home_lock, StopSignals() as signals:
        failure, died = _run_until_stopped(
            signals, settings, env, children, started, external_prefect
        )
        if failure is not None:
            console.print(f"[red]posegen up failed:[/red] {failure.message}")
            if failure.log is not None:
                print_tail(failure.log)
        elif died is not None:
            console.print(
                f"[red]{died.name} exited unexpectedly (code {died.process.returncode})[/red]; "
                "stopping everything"
            )
            print_tail(died.log)
        if children:
            console.print(f"stopping (up to {3 * STOP_GRACE:.0f} s)…")
            stop_all(children)
            console.print("stopped")
    return 1 if failure is not None or died is not None else 0


def _run_until_stopped(
    signals: StopSignals,
    settings: Settings,
    env: dict[str, str],
    children: list[Child],
    started: float,
    external_prefect: str | None,
) -> tuple[StartupFailed | None, Child | None]:
    """Start, print, supervise; returns why it ended: a startup failure, the child that died,
    or neither (Ctrl-C/SIGTERM). Signals are disarmed before it returns, so the shutdown that
    follows cannot be interrupted half-way and leave children running."""
    try:
        try:
            for name in stop_leftovers(_record(settings)):
                console.print(f"stopped {name}, left running by a `posegen up` that was killed")
            _refuse_taken_ports(settings, local_prefect=external_prefect is None)
            demo = _start(settings, env, children, external_prefect)
            console.print(
                f"[bold green]posegen is ready[/bold green] "
                f"(started in {time.monotonic() - started:.1f} s)"
            )
            print_usage(settings, demo, prefect_api_url=external_prefect)
            return None, supervise(children)
        finally:
            signals.disarm()
    except Stopped:
        return None, None
    except StartupFailed as failure:
        return failure, None
    except postgres.EmbeddedPostgresError as error:
        return StartupFailed(f"embedded PostgreSQL: {error}"), None
    except Exception as exc:  # whatever broke, the children started so far must be stopped
        console.print_exception()
        return StartupFailed(f"{type(exc).__name__}: {exc}"), None


def _start(
    settings: Settings, env: dict[str, str], children: list[Child], external_prefect: str | None
) -> DemoData:
    """Start everything, overlapping what does not depend on each other: PostgreSQL first
    (when the app database or the local Prefect server is embedded: both need it), the API
    and the demo seed while the Prefect server boots (most of the startup); the runner last,
    since serving creates deployments on the server."""
    from posegen.db.migrate import upgrade
    from posegen.demo import seed_demo
    from posegen.imaging.fetch_models import fetch_model
    from posegen.imaging.model_files import has_model
    from posegen.storage import get_storage

    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.print(f"state in {settings.home_dir}, logs in {logs}")
    spawn = Spawner(env, logs, children, _record(settings))
    prefect_db_given = any(env.get(name) for name in _PREFECT_DATABASE_SETTINGS)
    if settings.database_url is None or (external_prefect is None and not prefect_db_given):
        start_postgres(settings, spawn, children)
    if not has_model():
        # /health reports the model, and every change needs it: fetch it before anything starts.
        console.print(f"fetching the segmentation model {settings.rembg_model}")
        fetch_model(settings.rembg_model)
    upgrade()
    get_storage().ensure_bucket()
    settings.jwt_key()  # made once here, before the API could race this process to create it
    console.print(f"database {settings.database} migrated; storage {settings.storage}")
    prefect_url = external_prefect or settings.local_prefect_api_url
    server = start_prefect(settings, spawn) if external_prefect is None else None
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

    wait_until(
        lambda: answers(f"{prefect_url}/health"), "the Prefect server", server or api, children
    )
    ensure_limits_sync()
    runner_started = datetime.now(UTC)
    # Should `posegen up` die, the runner's graceful SIGTERM would retry pausing its deployments
    # on a Prefect server that died too (minutes), and then could pause the next stack's: it
    # is killed outright instead (its warm processes die with it; runs it had are crashed by
    # the heartbeat automation).
    runner = spawn.command("runner", spawn.argv("deployments.serve"), death_signal=signal.SIGKILL)
    console.print("Prefect server up; starting the runner")
    api_health = f"http://{client_host(settings.api_host)}:{settings.api_port}{BASE_PATH}/health"
    wait_until(lambda: answers(api_health), "the API", api, children)
    from prefect.utilities.asyncutils import run_coro_as_sync

    from posegen.orchestration import ensure_automations

    # The automations point at the reconciler's deployment: wait for it as well.
    for deployment in (
        settings.deployment_background_change,
        settings.deployment_refund_reconciler,
    ):
        wait_until(
            lambda name=deployment: _deployment_served(prefect_url, name, since=runner_started),
            f"the deployment {deployment}",
            runner,
            children,
        )

    for name in run_coro_as_sync(ensure_automations()) or []:
        console.print(f"automation: {name}")
    return demo


def start_postgres(settings: Settings, spawn: Spawner, children: list[Child]) -> None:
    """The embedded PostgreSQL in the foreground, our child: ready, with both databases. The
    owner's lock stays open for as long as this process lives (the kernel drops it after)."""
    _owner_locks.append(postgres.prepare(settings))
    server = spawn.command(
        "postgres",
        postgres.server_command(settings),
        stop_signal=signal.SIGINT,
        owns_descendants=True,
        **postgres.as_server_user(),
    )
    wait_until(lambda: postgres.ready(settings), "PostgreSQL", server, children)
    postgres.create_databases(settings)
    console.print(f"PostgreSQL ready (data in {settings.embedded_postgres_dir})")


def start_prefect(settings: Settings, spawn: Spawner) -> Child:
    """The local Prefect server on PostgreSQL; with N > 1 API workers, the services (scheduler,
    automations, event persister, …) run in a process of their own, as Prefect requires."""
    env = prefect_server_environment(settings, spawn.env)
    bind = ["--host", PREFECT_HOST, "--port", str(settings.prefect_port)]
    workers = settings.prefect_workers
    if workers == 1:
        return spawn.command(
            "prefect-server", spawn.argv("prefect", "server", "start", *bind), env=env
        )
    _require_redis(settings)
    # Each API worker would migrate the database and register block types as it starts, all
    # at once: done first, in one process, and the workers (and the services) start without.
    console.print("preparing the Prefect database")
    prepare = spawn.command(
        "prefect-database", spawn.argv("posegen.runtime.prefect_database"), env=env
    )
    spawn.children.remove(prepare)  # a step, not a part of the running stack
    try:
        code = prepare.process.wait()
    except BaseException:  # Ctrl-C meanwhile: it is not among the children stopped
        prepare.process.kill()
        raise
    if code != 0:
        raise StartupFailed("preparing the Prefect database failed", prepare.log)
    env = {
        **env,
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    }
    server = spawn.command(
        "prefect-server",
        spawn.argv("prefect", "server", "start", *bind, "--workers", str(workers)),
        env=env,
    )
    spawn.command("prefect-services", spawn.argv("prefect", "server", "services", "start"), env=env)
    console.print(f"Prefect server with {workers} API workers, Redis {settings.redis_url}")
    return server


def _require_redis(settings: Settings) -> None:
    import redis

    host, port, db = settings.redis
    try:
        redis.Redis(host=host, port=port, db=db, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        raise StartupFailed(
            f"{settings.prefect_workers} Prefect API workers need Redis, and "
            f"{settings.redis_url} (POSEGEN_REDIS_URL) does not answer: {error}"
        ) from error


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


def client_host(host: str) -> str:
    """Where to reach a server bound to `host`: a wildcard bind is reachable on loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _record(settings: Settings) -> Path:
    return settings.home_dir / "stack.pids"


def _lock_home(settings: Settings) -> IO[str]:
    """One stack per home: an exclusive lock on `$POSEGEN_HOME/stack.lock`, released by the
    kernel however this process ends (children do not inherit it)."""
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    lock = (settings.home_dir / "stack.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        lock.close()
        raise StartupFailed(
            f"another `posegen up` is running on {settings.home_dir}; stop it first"
        ) from error
    return lock


def _refuse_taken_ports(settings: Settings, *, local_prefect: bool) -> None:
    wanted = [("the API", settings.api_host, settings.api_port)]
    if local_prefect:
        wanted.insert(0, ("the Prefect server", PREFECT_HOST, settings.prefect_port))
    for what, host, port in wanted:
        if port_taken(host, port):
            raise StartupFailed(
                f"{host}:{port} (for {what}) is already in use by another program. Stop it "
                "(is another `posegen up` running?) or choose other ports with "
                "POSEGEN_PREFECT_PORT / POSEGEN_API_PORT."
            )
