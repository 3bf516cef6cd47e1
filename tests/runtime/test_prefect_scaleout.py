"""`posegen up --prefect-workers 2`: a Prefect server with two API workers and a services process
on the embedded PostgreSQL, sharing Redis (the machine's, a database of its own), keeps every
posegen guarantee: completion events reach `/events`, the global concurrency slots hold across
workers, the reconcile automation fires on a failed change and the reconciler it starts runs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis

from posegen.orchestration import BACKGROUND_CHANGE_LIMIT
from posegen.runtime.processes import process_tree
from tests.sse import EventStream
from tests.stack_harness import (
    STARTUP_TIMEOUT,
    cmdline,
    printed_value,
    stack_env,
    start_up,
    stop_up,
)

pytestmark = pytest.mark.slow

BASE = "/api/apps/pose-generator"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SLOTS = 3  # posegen's default for the background-change limit
EVENT_TIMEOUT = 150.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty Redis database of the machine's server (Prefect's streams have no key prefix:
    two servers on one database would consume each other's events), flushed afterwards."""
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("CI") == "true":  # .ci/run starts Redis: missing is a failure there
            raise
        pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT}: {error}")
    for db in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if client.dbsize() == 0:
            client.set("posegen-test-claim", "1")  # keep a parallel session off this one
            try:
                yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
            finally:
                client.flushdb()
            return
    pytest.skip("no empty Redis database")


def test_two_prefect_workers_keep_events_slots_automations_and_the_reconciler(
    rembg_warm: None, tmp_path: Path, redis_url: str
) -> None:
    home = tmp_path / "home"
    env, api_port = stack_env(home, POSEGEN_REDIS_URL=redis_url)
    prefect = f"http://127.0.0.1:{env['POSEGEN_PREFECT_PORT']}/api"
    api = f"http://127.0.0.1:{api_port}{BASE}"
    up, output = start_up(env, "--prefect-workers", "2")
    stream: EventStream | None = None
    try:
        printed = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        commands = [cmdline(pid) for pid in process_tree(up.pid)]
        assert any("prefect server start" in c and "--workers 2" in c for c in commands)
        assert any("prefect server services start" in c for c in commands)
        headers = {"Authorization": f"Bearer {printed_value(printed, 'user token')}"}
        demo_pose = printed_value(printed, "demo pose")
        pose = httpx.get(f"{api}/poses/{demo_pose}", headers=headers, timeout=30).json()
        generation = httpx.get(
            f"{api}/generations/{pose['generationId']}", headers=headers, timeout=30
        ).json()
        [first_pose, second_pose, *_] = generation["poses"]

        # Events: the flow run's completion reaches the user's /events stream.
        stream = EventStream.open(f"{api}/events", headers)
        assert stream.response.status_code == 200
        accepted = _change(api, first_pose["id"], headers)
        [done] = stream.events(1, timeout=EVENT_TIMEOUT)
        assert done.event == "background-change.completed", done
        assert done.json["payload"]["poseId"] == first_pose["id"]
        assert done.json["payload"]["imageUrl"] == accepted["outputImageUrl"]

        _assert_slots_hold_across_workers(prefect)

        # A change that fails (its original is gone): refunded, the failure event, and the
        # automation starts the reconciler, which completes.
        failed_at = time.time()
        key = second_pose["originalImageUrl"].split("/files/", 1)[1]
        (home / "storage" / key).unlink()
        _change(api, second_pose["id"], headers)
        [failed] = stream.events(1, timeout=EVENT_TIMEOUT)
        assert failed.event == "background-change.failed", failed
        assert failed.json["payload"]["creditRefunded"] == 10  # the amount given back
        me = httpx.get(f"{api}/me", headers=headers, timeout=30).json()
        assert me["credits"] == 100 - 10, "one charge kept, the failed one refunded"
        _wait_for_automation_reconciler(prefect, since=failed_at)
    finally:
        if stream is not None:
            stream.close()
        stop_up(up)


def _change(api: str, pose_id: str, headers: dict[str, str]) -> dict[str, object]:
    accepted = httpx.post(
        f"{api}/poses/{pose_id}/background",
        json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
        headers=headers,
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    return accepted.json()


def _assert_slots_hold_across_workers(prefect: str) -> None:
    """Each lease on a new connection (the kernel spreads them over both workers' shared
    socket): the limit's slots are granted exactly SLOTS times, then refused, then free again
    once released — the count and the leases are shared, not per worker."""
    body = {"names": [BACKGROUND_CHANGE_LIMIT], "slots": 1, "mode": "concurrency"}
    leases: list[str] = []
    try:
        for _ in range(SLOTS):
            granted = httpx.post(
                f"{prefect}/v2/concurrency_limits/increment-with-lease",
                json={**body, "lease_duration": 60},
                timeout=30,
            )
            assert granted.status_code == 200, granted.text
            leases.append(granted.json()["lease_id"])
        refused = httpx.post(
            f"{prefect}/v2/concurrency_limits/increment-with-lease",
            json={**body, "lease_duration": 60},
            timeout=30,
        )
        assert refused.status_code == 423, refused.text
    finally:
        for lease in leases:
            httpx.post(
                f"{prefect}/v2/concurrency_limits/decrement-with-lease",
                json={"lease_id": lease},
                timeout=30,
            ).raise_for_status()
    limit = httpx.get(f"{prefect}/v2/concurrency_limits/{BACKGROUND_CHANGE_LIMIT}", timeout=30)
    assert limit.json()["active_slots"] == 0


def _wait_for_automation_reconciler(prefect: str, *, since: float) -> None:
    deployment = httpx.get(
        f"{prefect}/deployments/name/refund-reconciler/refund-reconciler", timeout=30
    ).json()
    deadline = time.monotonic() + EVENT_TIMEOUT
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        runs = httpx.post(
            f"{prefect}/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}},
            timeout=30,
        ).json()
        by_automation = [
            run
            for run in runs
            if (run.get("created_by") or {}).get("type") == "AUTOMATION"  # type: ignore[union-attr]
            and _timestamp(str(run["created"])) >= since - 1
        ]
        if any(run["state_type"] == "COMPLETED" for run in by_automation):
            return
        time.sleep(1)
    pytest.fail(f"no automation-started reconciler run completed: {runs}")


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
