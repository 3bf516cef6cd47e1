"""Unattended-path fixtures: a real Prefect server, as `posegen up` runs it, and serving processes.

The session's `prefect_test_harness()` server is ephemeral: it runs no repossessor, so a lease
held by a killed run never lapses there (which is why slots used to be reset behind tests'
backs). These tests need the server's own background services doing their jobs unwatched —
the repossessor lapsing leases, proactive triggers crashing silent runs, the automations'
actions starting the reconciler — so they get a `prefect server start` of their own, on the
machine's PostgreSQL. Its service loops are shortened (a cadence, not a behaviour change).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, ROOT

# Fixtures of the reliability suite, used here on this module's server: the session's
# PostgreSQL + a bucket on moto, users owning poses, and serving processes tests may kill.
from tests.reliability.conftest import owner_of, pg_s3_env, runner_of  # noqa: F401
from tests.reliability.test_faults import flux  # noqa: F401

# The shortest lease Prefect accepts; production keeps 120 s.
SLOT_LEASE_SECONDS = 60
# Prefect's shortest heartbeat; the zombie automation waits one and a half beats here
# (three in production) so a dead run is seen in under a minute.
HEARTBEAT_SECONDS = 30
CRASHED_AFTER_SECONDS = 45
# Every serving process these tests start: the settings above, and heartbeats on.
RUNNER_ENV = {
    "POSEGEN_BACKGROUND_CHANGE_SLOT_LEASE_SECONDS": str(SLOT_LEASE_SECONDS),
    "POSEGEN_FLOWS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    "POSEGEN_FLOWS_CRASHED_AFTER_SECONDS": str(CRASHED_AFTER_SECONDS),
    "POSEGEN_WARM_POLL_SECONDS": "1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def real_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on a fresh PostgreSQL database; its API URL."""
    name = f"prefect_unattended_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    host_part = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@{host_part}/{name}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # No scheduled runs: a reconciler run exists only when the automation starts one.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
        "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT2S",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = Path(home) / "server.log"
    log = log_path.open("w")
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def prefect_api(real_prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This directory's Prefect API is the real server, for this process and its children."""
    import posegen.orchestration as orchestration

    monkeypatch.setenv("PREFECT_API_URL", real_prefect_server)
    for key, value in RUNNER_ENV.items():
        monkeypatch.setenv(key, value)
    with temporary_settings({PREFECT_API_URL: real_prefect_server}):
        # This process made the limits on the session's harness server already: again here.
        monkeypatch.setattr(orchestration, "_limits_ready", False)
        orchestration.ensure_limits_sync()
        yield real_prefect_server


@pytest.fixture
def automations(prefect_api: str) -> Iterator[list[str]]:
    """The automations `posegen up` creates (zombie → Crashed, bad end → reconciler), made
    after a runner registered the reconciler's deployment; deleted afterwards."""
    import asyncio

    from prefect.client.orchestration import get_client

    from posegen.config import reset_settings

    reset_settings()  # the window is read from POSEGEN_FLOWS_CRASHED_AFTER_SECONDS

    async def delete() -> None:
        async with get_client() as client:
            for automation in await client.read_automations():
                if automation.name.startswith("posegen:"):
                    await client.delete_automation(automation.id)

    created: list[str] = []
    yield created  # the test calls `create_automations(created)` once the reconciler is served
    asyncio.run(delete())


def create_automations(into: list[str], runner: Any) -> None:
    """Once `runner` serves the reconciler (the automations point at its deployment)."""
    import asyncio

    from posegen.config import get_settings
    from posegen.orchestration import ensure_automations

    api = os.environ["PREFECT_API_URL"]
    name = get_settings().deployment_refund_reconciler
    deadline = time.monotonic() + 60
    while httpx.get(f"{api}/deployments/name/{name}", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, runner.log_tail()
        time.sleep(0.3)
    into.extend(asyncio.run(ensure_automations()))
