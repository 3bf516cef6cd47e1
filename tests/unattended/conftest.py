"""Unattended-path fixtures: this directory runs on the real Prefect server (not the harness).

See tests/fixtures/prefect_server.py for why; the serving processes and users come from the
reliability suite's fixtures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.prefect_server import (  # noqa: F401 (re-exported for the tests)
    CRASHED_AFTER_SECONDS,
    HEARTBEAT_SECONDS,
    SLOT_LEASE_SECONDS,
    on_real_prefect_server,
)

# Fixtures of the reliability suite, which runs on the same real server: its Prefect API, the
# session's PostgreSQL + a bucket on moto, users owning poses, and serving processes tests may kill.
from tests.reliability.conftest import (  # noqa: F401
    owner_of,
    pg_s3_env,
    prefect_api,
    runner_of,
)
from tests.reliability.test_faults import flux  # noqa: F401


@pytest.fixture
def automations(prefect_api: str) -> Iterator[list[str]]:  # noqa: F811 (the imported fixture)
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
