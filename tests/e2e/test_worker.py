"""prefect.yaml works on a real cluster shape: `prefect deploy --all` to the `posegen` process
pool, a `prefect worker` picks up a background change and completes it.

It uses a Prefect server of its own (not the session's), so the deployments it creates cannot
collide with the ones other tests serve.
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

import httpx
import pytest

from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange, record_flow_run, start_change
from posegen.domain.credits import balance
from posegen.domain.poses import import_generation
from posegen.domain.users import get_user
from posegen.storage import get_storage
from tests.conftest import ROOT, make_user
from tests.flows.conftest import astronaut_png

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, timeout: float, what: str, logs: list[Path]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


@pytest.fixture
def cluster(
    rembg_warm: None, app_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """A Prefect server, the posegen pool with every deployment from prefect.yaml, a worker."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **app_env,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "POSEGEN_PROJECT_DIR": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "server.log", tmp_path / "worker.log"]
    try:
        processes.append(
            subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=logs[0].open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 90, "the Prefect server", logs)
        subprocess.run(
            [PREFECT, "work-pool", "create", "posegen", "--type", "process"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        deployed = subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--all"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        processes.append(
            subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "posegen"],
                env=env,
                cwd=ROOT,
                stdout=logs[1].open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        yield api, env
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_prefect_deploy_all_and_a_worker_complete_a_background_change(
    cluster: tuple[str, dict[str, str]], app_env: dict[str, str], tmp_path: Path
) -> None:
    api, _env = cluster
    names = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
    assert names >= {
        "background-change",
        "multi-format-export",
        "nightly-exports",
        "pose-request-stats",
        "refund-reconciler",
    }

    url = app_env["POSEGEN_DATABASE_URL"]
    user_id = make_user(url, credits=30)
    change = BackgroundChange(background_mode="solid_color", background_color="#FF00FF")
    with session_scope(url) as session:
        generation = import_generation(session, get_storage(), user_id, [astronaut_png(128)])
        pose_id = generation.poses[0].id
        ticket = start_change(session, get_user(session, user_id), pose_id, uuid.uuid4(), change)
    deployment = httpx.get(
        f"{api}/deployments/name/background-change/background-change", timeout=10
    ).json()
    created = httpx.post(
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        json={
            "parameters": {
                "pose_id": str(pose_id),
                "user_id": str(user_id),
                "request_id": str(ticket.request_id),
                "change": change.model_dump(mode="json", by_alias=True),
            }
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    run_id = uuid.UUID(created.json()["id"])
    with session_scope(url) as session:
        record_flow_run(session, ticket, run_id)

    def finished() -> bool:
        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]["type"]
        assert state not in ("FAILED", "CRASHED"), state
        return state == "COMPLETED"

    _wait(finished, 180, "the worker to complete the run", [tmp_path / "worker.log"])
    with session_scope(url) as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None and pose.status == "ready" and pose.background_color == "#FF00FF"
        assert balance(session, user_id) == 20
