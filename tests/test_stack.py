"""`posegen up` end to end: it gets ready on the embedded PostgreSQL (both the app database and
the Prefect server on it), serves a background change through the API, and a Ctrl-C leaves no
process behind; a killed `posegen up` leaves nothing that stops the next one; external
POSEGEN_DATABASE_URL / PREFECT_API_URL win over the embedded parts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from posegen.config import Settings
from posegen.demo import DEMO_USER_EMAIL
from posegen.runtime.postgres import as_server_user
from posegen.runtime.processes import process_tree, still_running
from tests.stack_harness import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    StackOutput,
    cmdline,
    printed_value,
    stack_env,
    start_up,
    stop_up,
)

pytestmark = pytest.mark.slow

CHANGE_TIMEOUT = 120.0


def _postgres_in(tree: dict[int, int], data: Path) -> list[int]:
    """The stack's PostgreSQL: a postgres process of the tree working in `data`."""
    found = []
    for pid in tree:
        with_data = Path(f"/proc/{pid}")
        try:
            if (with_data / "comm").read_text().strip() == "postgres" and Path(
                os.readlink(with_data / "cwd")
            ) == data:
                found.append(pid)
        except OSError:
            continue
    return found


def _embedded(settings: Settings, database: str) -> psycopg.Connection:
    return psycopg.connect(
        host=str(settings.embedded_postgres_socket_dir), user="postgres", dbname=database
    )


def test_up_serves_a_background_change_and_ctrl_c_stops_every_process(
    rembg_warm: None, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env, api_port = stack_env(home)
    settings = Settings(home=home)
    up, output = start_up(env)
    try:
        printed = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        assert "posegen is ready" in printed
        token, pose_id = printed_value(printed, "user token"), printed_value(printed, "demo pose")
        base = f"http://127.0.0.1:{api_port}/api/apps/pose-generator"
        headers = {"Authorization": f"Bearer {token}"}

        accepted = httpx.post(
            f"{base}/poses/{pose_id}/background",
            json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
            headers=headers,
            timeout=30,
        )
        assert accepted.status_code == 202, accepted.text
        pose = _wait_until_changed(f"{base}/poses/{pose_id}", headers, output)
        assert pose["backgroundColor"] == "#1E90FF"
        assert pose["imageUrl"] != pose["originalImageUrl"]

        # Both on the embedded PostgreSQL: the app's rows in `posegen`, the run in `prefect`.
        assert f"database      {settings.database}" in printed
        with _embedded(settings, "posegen") as app_db:
            charged = app_db.execute(
                "SELECT count(*) FROM credit_transactions WHERE amount = -10"
            ).fetchone()
        assert charged == (1,)
        # The pose is updated (and the user told) a moment before the run reports Completed.
        deadline = time.monotonic() + 30
        while True:
            with _embedded(settings, "prefect") as prefect_db:
                run = prefect_db.execute(
                    "SELECT state_type FROM flow_run WHERE id = %s",
                    (accepted.json()["flowRunId"],),
                ).fetchone()
            if run == ("COMPLETED",) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert run == ("COMPLETED",)
        assert not list(home.rglob("*.db")), "a SQLite file on the default path"

        # The printed sign-in link opens the web app as the demo user, once.
        link = printed_value(printed, "user sign-in")
        with httpx.Client(timeout=30) as browser:
            assert browser.get(link, follow_redirects=False).status_code == 303
            page = browser.get(printed_value(printed, "web app"))
        assert page.status_code == 200
        assert "Your generations" in page.text
        assert DEMO_USER_EMAIL in page.text
        assert httpx.get(link, follow_redirects=False, timeout=30).status_code == 401

        tree = process_tree(up.pid)
        assert len(tree) >= 4, f"expected PostgreSQL, Prefect, runner and API: {tree}"
        assert _postgres_in(tree, settings.embedded_postgres_dir), "no embedded PostgreSQL"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=STOP_TIMEOUT) == 0, output.text()
        assert still_running(tree) == {}, f"left running: {still_running(tree)}"
        assert not (settings.embedded_postgres_dir / "postmaster.pid").exists()
    finally:
        stop_up(up)


def test_a_killed_up_leaves_nothing_that_stops_the_next_one(
    rembg_warm: None, tmp_path: Path
) -> None:
    """SIGKILL of `posegen up` and its PostgreSQL (a crash, the OOM killer): the children end
    with their parent, and the stale postmaster.pid — its pid now another process's — does not
    keep the next `posegen up` on the same home from starting on the same data."""
    home = tmp_path / "home"
    env, api_port = stack_env(home)
    settings = Settings(home=home)
    up, output = start_up(env)
    impostor: subprocess.Popen[bytes] | None = None
    try:
        first = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        tree = process_tree(up.pid)
        server = _postgres_in(tree, settings.embedded_postgres_dir)
        assert server
        for pid in [up.pid, *server]:
            os.kill(pid, signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while still_running(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert still_running(tree) == {}, f"outlived a killed up: {still_running(tree)}"
        pid_file = settings.embedded_postgres_dir / "postmaster.pid"
        assert pid_file.exists(), "a killed postmaster leaves its pid file"
        # The pid in it now belongs to a live process (what PostgreSQL itself would refuse).
        impostor = subprocess.Popen(["sleep", "300"], **as_server_user())  # type: ignore[call-overload]
        lines = pid_file.read_text().split("\n")
        pid_file.write_text("\n".join([str(impostor.pid), *lines[1:]]))

        up, output = start_up(env)
        second = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        assert "posegen is ready" in second
        # Same data: the demo user and the first stack's pose are still there.
        assert printed_value(second, "demo pose") == printed_value(first, "demo pose")
        me = httpx.get(
            f"http://127.0.0.1:{api_port}/api/apps/pose-generator/me",
            headers={"Authorization": f"Bearer {printed_value(second, 'user token')}"},
            timeout=30,
        )
        assert me.status_code == 200 and me.json()["email"] == DEMO_USER_EMAIL
        assert impostor.poll() is None, "an unrelated process was signalled"
    finally:
        stop_up(up)
        if impostor is not None:
            impostor.kill()
            impostor.wait()


def test_external_database_and_prefect_urls_win(
    rembg_warm: None, tmp_path: Path, pg_url: str, prefect_api: str
) -> None:
    """With POSEGEN_DATABASE_URL and PREFECT_API_URL set, `posegen up` starts neither the
    embedded PostgreSQL nor a Prefect server, and its data lands where those URLs say."""
    home = tmp_path / "home"
    env, _ = stack_env(home, POSEGEN_DATABASE_URL=pg_url, PREFECT_API_URL=prefect_api)
    up, output = start_up(env)
    try:
        printed = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        assert f"Prefect API {prefect_api} (PREFECT_API_URL)" in printed
        names = " ".join(cmdline(pid) for pid in process_tree(up.pid))
        assert "prefect server start" not in names
        assert "postgres -D" not in names
        assert not Settings(home=home).embedded_postgres_dir.exists()
        with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
            found = conn.execute(
                "SELECT count(*) FROM users WHERE email = %s", (DEMO_USER_EMAIL,)
            ).fetchone()
        assert found == (1,)
        deployment = httpx.get(
            f"{prefect_api}/deployments/name/background-change/background-change", timeout=10
        )
        assert deployment.status_code == 200
    finally:
        stop_up(up)


def _wait_until_changed(
    url: str, headers: dict[str, str], output: StackOutput
) -> dict[str, object]:
    deadline = time.monotonic() + CHANGE_TIMEOUT
    pose: dict[str, object] = {}
    while time.monotonic() < deadline:
        pose = httpx.get(url, headers=headers, timeout=10).json()
        if pose.get("status") == "failed":
            pytest.fail(f"the background change failed: {pose.get('errorMessage')}")
        if pose.get("status") == "ready" and pose.get("backgroundChanged"):
            return pose
        time.sleep(0.25)
    pytest.fail(f"pose not changed within {CHANGE_TIMEOUT:.0f} s: {pose}\n{output.text()}")
