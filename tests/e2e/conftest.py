"""End-to-end fixtures: a real runner process serving the deployments, as under `make run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posegen.config import reset_settings
from tests.conftest import ROOT

DEPLOYMENT = f"background-change/e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def served(
    rembg_warm: None,
    prefect_api: str,
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[None]:
    """A runner subprocess serving the deployment, sharing this test's database and storage."""
    monkeypatch.setenv("POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE", DEPLOYMENT)
    reset_settings()
    env = {
        **os.environ,
        **app_env,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": DEPLOYMENT,
    }
    log = (tmp_path / "runner.log").open("w")
    runner = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert runner.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
            found = httpx.get(f"{prefect_api}/deployments/name/{DEPLOYMENT}", timeout=5)
            if found.status_code == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the runner never registered its deployment")
        yield
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            runner.kill()
        log.close()
