"""What every bench shares: an isolated home, processes started and polled until they answer,
the servers the end-to-end benches run against (a Prefect API on SQLite or on PostgreSQL), and
mask agreement (IoU).

SQLite is what the tests use (`prefect_test_harness`); a burst of writes makes it answer 503
"database is locked", which the client retries after ~2 s (DESIGN.md, Prefect facts), so a
bench on SQLite measures those retries. PostgreSQL is the production path: `--db postgres`
starts `prefect server start` on a fresh database of the local server, and puts posegen's own
database there too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def isolated_home(prefix: str) -> Path:
    """A temp POSEGEN_HOME with its own SQLite database, storage, Prefect home and JWT secret,
    set in this process's environment before any posegen or Prefect settings are read; the
    model files and numba cache stay the project's."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        {
            "POSEGEN_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "POSEGEN_JWT_SECRET": "bench-" + uuid.uuid4().hex,
            "POSEGEN_DATABASE_URL": f"sqlite:///{home / 'posegen.db'}",
            "POSEGEN_STORAGE_URL": str(home / "storage"),
        }
    )
    os.environ.setdefault("REMBG_HOME", str(ROOT / ".posegen" / "models"))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".posegen" / "numba-cache"))
    return home


PG_ADMIN_URL = os.environ.get(
    "POSEGEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(
    command: Sequence[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """`command` from the project root (or another source tree, `cwd`: a bench's baseline) in
    its own session, output in `log`."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path,
    timeout: float,
    interval: float = 0.5,
) -> None:
    """Poll `ready` (an HTTP error counts as not yet) until it holds; fail with the end of the
    log if the process exits first, or once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} never answered within {timeout:.0f} s; see {log}")
        time.sleep(interval)


def answers(url: str, timeout: float = 2.0) -> bool:
    """The URL answers 200 (a readiness check for `wait_until_ready`)."""
    return httpx.get(url, timeout=timeout).status_code == 200


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def iou(a: Image.Image, b: Image.Image) -> float:
    """Intersection over union of two masks, each thresholded at 128."""
    x, y = np.asarray(a) >= 128, np.asarray(b) >= 128
    union = np.logical_or(x, y).sum()
    return float(np.logical_and(x, y).sum() / union) if union else 1.0


@contextlib.contextmanager
def pg_database(prefix: str, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new database on the PostgreSQL server of `admin_url` (psycopg URL), dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def prefect_api(db: str) -> Iterator[str]:
    """A Prefect API for this process and the runners it starts; yields its URL.

    With `db="postgres"` posegen's database also moves to a fresh PostgreSQL database
    (POSEGEN_DATABASE_URL is set before any engine exists).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if db == "sqlite":
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=90):
            url = PREFECT_API_URL.value()
            os.environ["PREFECT_API_URL"] = url
            yield url
        return
    with pg_database("bench_prefect") as prefect_db, pg_database("bench_app") as app_db:
        os.environ["POSEGEN_DATABASE_URL"] = app_db
        port = free_port()
        home = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_db.replace(
                "postgresql+psycopg", "postgresql+asyncpg"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        log = home / "server.log"
        server = start_process([*command, "--port", str(port)], log, env=env)
        url = f"http://127.0.0.1:{port}/api"
        try:
            wait_until_ready(
                server,
                lambda: answers(f"{url}/health"),
                what="the Prefect server",
                log=log,
                timeout=300,  # minutes, not seconds, on a machine shared by several benches
            )
            os.environ["PREFECT_API_URL"] = url
            with temporary_settings({PREFECT_API_URL: url}):
                yield url
        finally:
            stop_process(server)


# -- CPU spent, by role ---------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> str:
    """Process `pid`'s command line, arguments joined by spaces ("" once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


_DATABASE_URL_VARIABLES = ("POSEGEN_DATABASE_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def _database_names(pid: int) -> set[str]:
    """The PostgreSQL database names in process `pid`'s environment (its connection URLs)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return set()
    names = set()
    for entry in environ.split("\0"):
        key, _, value = entry.partition("=")
        if key in _DATABASE_URL_VARIABLES and "/" in value:
            names.add(value.rsplit("/", 1)[1].split("?", 1)[0])
    return names


class CpuMeter:
    """CPU seconds spent by each part of a bench's stack: this process (the clients), the
    processes it started, by role, and the PostgreSQL backends serving their databases.

    Where a figure on a 2-core machine is bound by CPU, the split says who spent it: what one
    request costs each process, so a ceiling can be explained rather than guessed.
    """

    def __init__(self, roles: dict[str, int]) -> None:
        # role → root pid of that part of the stack (it and its descendants count)
        self.roles = roles

    def read(self) -> dict[str, float]:
        from posegen.runtime.processes import process_tree

        spent = {"bench (clients)": _cpu_seconds(os.getpid())}
        databases: set[str] = set()
        for role, root in self.roles.items():
            pids = [root, *process_tree(root)]
            spent[role] = sum(_cpu_seconds(pid) for pid in pids)
            for pid in pids:
                databases |= _database_names(pid)
        backends = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and (line := cmdline(int(entry.name))).startswith("postgres: ")
            and any(f" {name} " in line for name in databases)
        ]
        spent["PostgreSQL backends"] = sum(_cpu_seconds(pid) for pid in backends)
        return spent

    @staticmethod
    def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> str:
        """`role 12.3 ms, …` of CPU per request between two readings."""
        parts = [
            f"{role} {(after[role] - before.get(role, 0.0)) * 1000 / requests:.1f}"
            for role in after
        ]
        total = sum(after[role] - before.get(role, 0.0) for role in after) * 1000 / requests
        return f"CPU ms per request: {', '.join(parts)}; all {total:.1f}"
