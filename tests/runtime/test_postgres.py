"""The embedded PostgreSQL (posegen/runtime/postgres.py): a CLI command starts it for itself and
stops it; a stale `postmaster.pid` or an owner-less server left by a crash never blocks the
next start; a server someone owns is never taken from them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from posegen.config import Settings
from posegen.runtime import postgres

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "POSEGEN_HOME": str(home)}
    env.pop("POSEGEN_DATABASE_URL", None)
    return env


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen.cli", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _postmasters(data: Path) -> list[int]:
    """Live postgres processes working in `data` (its postmaster and backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres" and Path(
                    os.readlink(entry / "cwd")
                ) == data.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _users(settings: Settings) -> list[str]:
    with (
        postgres.embedded_database(settings),
        psycopg.connect(
            host=str(settings.embedded_postgres_socket_dir), user="postgres", dbname="posegen"
        ) as conn,
    ):
        return [row[0] for row in conn.execute("SELECT email FROM users")]


def test_a_cli_command_starts_the_embedded_server_for_itself_and_stops_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    assert _cli(home, "db", "upgrade").returncode == 0
    created = _cli(home, "users", "create", "seller@example.com", "--credits", "30")
    assert created.returncode == 0, created.stderr
    uuid.UUID(created.stdout.strip().splitlines()[-1])

    settings = Settings(home=home)
    data = settings.embedded_postgres_dir
    assert (data / "PG_VERSION").exists()
    assert _postmasters(data) == [], "the command's server outlived it"
    assert not (data / "postmaster.pid").exists()
    assert not list(home.glob("*.db")), "no SQLite file on the default path"
    # The row is in the embedded server's `posegen` database, and survives restarts.
    assert _users(settings) == ["seller@example.com"]


def test_a_stale_postmaster_pid_naming_a_live_process_does_not_block_a_start(
    tmp_path: Path,
) -> None:
    """After a crash the pid in postmaster.pid may belong to another process of the server's
    user (PostgreSQL itself would then refuse to start)."""
    settings = Settings(home=tmp_path / "home")
    postgres.prepare(settings).close()  # initdb
    impostor = subprocess.Popen(["sleep", "60"], **postgres.as_server_user())  # type: ignore[call-overload]
    try:
        pid_file = settings.embedded_postgres_dir / "postmaster.pid"
        pid_file.write_text(f"{impostor.pid}\n{settings.embedded_postgres_dir}\n")
        assert _posegen_database_answers(settings)
        assert impostor.poll() is None, "an unrelated process was signalled"
    finally:
        impostor.kill()
        impostor.wait()


def _posegen_database_answers(settings: Settings) -> bool:
    with (
        postgres.embedded_database(settings),
        psycopg.connect(
            host=str(settings.embedded_postgres_socket_dir), user="postgres", dbname="posegen"
        ) as conn,
    ):
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_left_without_its_owner_is_stopped_and_one_with_an_owner_is_refused(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    data = settings.embedded_postgres_dir
    owner = postgres.prepare(settings)
    server = subprocess.Popen(
        postgres.server_command(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **postgres.as_server_user(),  # type: ignore[call-overload]
    )
    try:
        postgres.wait_ready(settings, server)
        # Owned (the lock is held): another start is refused, the server left alone.
        with pytest.raises(postgres.EmbeddedPostgresError, match="belongs to another"):
            postgres.prepare(settings)
        assert postgres.ready(settings)
        # The owner dies (its lock goes with it): the next start stops the orphan first.
        owner.close()
        postgres.prepare(settings).close()
        assert server.wait(timeout=30) == 0, "not a clean (fast) shutdown"
        assert _postmasters(data) == []
        assert _posegen_database_answers(settings)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGQUIT)
            server.wait()
