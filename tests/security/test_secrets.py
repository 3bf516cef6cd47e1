"""No key or token in logs, events, artifacts, run states or error bodies.

Known secrets (the JWT signing key, a FLUX API key the fake FLUX server refuses, a user's bearer
token) go through authentication failures and a background change that fails in FLUX. Then
everything an operator or a client can read is collected and grepped for them: posegen's JSON
log lines, every record the loggers saw (caplog: at DEBUG, before redaction), response bodies
and headers, the Prefect event, the run's state messages and the logs Prefect kept, artifacts,
and the error stored on the pose.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from posegen.api.app import create_app
from posegen.auth import create_token
from posegen.config import get_settings, reset_settings
from posegen.domain.background import BackgroundChange
from posegen.events import EVENT_BACKGROUND_FAILED
from posegen.logging import configure_logging
from posegen.storage import get_storage
from tests.api.conftest import BASE, Account, Generated, balance
from tests.events import wait_for_events
from tests.fake_bfl import FakeBFLServer

FLUX_KEY = f"flux-key-{uuid.uuid4().hex}"  # not the fake server's key: it answers 403


@pytest.fixture
def json_log_buffer(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[io.StringIO]:
    """posegen's own log handler in JSON mode, writing where the test can read it."""
    monkeypatch.setenv("POSEGEN_LOG_JSON", "1")
    reset_settings()
    buffer = io.StringIO()
    yield buffer
    monkeypatch.delenv("POSEGEN_LOG_JSON")
    reset_settings()
    configure_logging()


@pytest.fixture
def refused_flux_key(
    app_env: dict[str, str], fake_bfl: FakeBFLServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", FLUX_KEY)
    reset_settings()
    yield FLUX_KEY
    reset_settings()


def test_no_secret_reaches_logs_events_artifacts_or_error_bodies(
    json_log_buffer: io.StringIO,
    refused_flux_key: str,
    fake_bfl: FakeBFLServer,
    background_deployment: str,
    caplog: pytest.LogCaptureFixture,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
    db_url: str,
) -> None:
    prefect_api = background_deployment
    caplog.set_level(logging.DEBUG)
    jwt_key = get_settings().jwt_key()
    user = new_account()
    generated = new_generation(user)
    _skip_segmentation(generated)
    app = create_app()
    configure_logging(stream=json_log_buffer)  # create_app() pointed it at stderr
    seen: list[str] = []

    with TestClient(app) as client:
        seen += _authentication_failures(client, user, jwt_key)
        change = {"backgroundMode": "ai_generate", "backgroundPrompt": "a quiet beach at dawn"}
        accepted = client.post(
            f"{BASE}/poses/{generated.pose_id}/background", json=change, headers=user.headers
        )
        assert accepted.status_code == 202, accepted.text
        seen.append(_dump(accepted))
        state = _run_as_the_runner_would(accepted.json()["flowRunId"])
        pose = client.get(f"{BASE}/poses/{generated.pose_id}", headers=user.headers)
        seen.append(_dump(pose))

    assert state.is_failed()
    assert "refused the configured API key" in pose.json()["errorMessage"]
    assert balance(db_url, user.id) == 100  # refunded
    # The key really went where it belongs, so finding it nowhere else means something.
    submit = fake_bfl.requests_to("/v1/flux-pro-1.1", method="POST")[0]
    assert submit.headers["x-key"] == refused_flux_key
    run_id = str(state.state_details.flow_run_id)
    events = wait_for_events(
        prefect_api, EVENT_BACKGROUND_FAILED, f"posegen.pose.{generated.pose_id}"
    )
    assert len(events) == 1
    assert events[0]["payload"]["errorMessage"] == pose.json()["errorMessage"]
    seen.append(json.dumps(events))
    seen += _kept_by_prefect(prefect_api, run_id)
    seen.append(json_log_buffer.getvalue())
    seen += [_as_logged(record) for record in caplog.records if not _test_client_line(record)]

    haystack = "\n".join(seen)
    assert "posegen.api.access" in json_log_buffer.getvalue()  # the logs were captured
    secrets = {
        "jwt secret": jwt_key,
        "flux key": refused_flux_key,
        "bearer token": user.token,
        "token signature": user.token.split(".")[2],
    }
    assert {name for name, secret in secrets.items() if secret in haystack} == set()


def _skip_segmentation(generated: Generated) -> None:
    """A stored mask makes the flow skip segmentation (it reuses masks): the failure under test
    is FLUX's, and loading the model would only cost time."""
    mask = Image.new("L", (96, 128), 255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    key = f"poses/{generated.generation_id}/{generated.pose_id}_mask.png"
    get_storage().write_bytes(key, buffer.getvalue(), "image/png")


def _authentication_failures(client: TestClient, user: Account, jwt_key: str) -> list[str]:
    """Requests that carry a secret and fail; their answers and log lines must not echo it."""
    claims = {"sub": str(user.id), "exp": int(time.time()) + 3600}
    attempts = [
        {"headers": {"Authorization": f"Bearer {user.token}x"}},
        {"headers": {"Authorization": f"Bearer {jwt.encode(claims, jwt_key + 'x')}"}},
        {"headers": {"Authorization": f"Bearer {create_token(user.id, 'USER', days=-1)}"}},
        {"headers": {"Authorization": f"Bearer {jwt_key}"}},  # the key itself, by mistake
        {"headers": {"Authorization": f"Basic {user.token}"}},
        {"params": {"access_token": user.token}},
        {"headers": {"x-key": FLUX_KEY}},
    ]
    answers = []
    for attempt in attempts:
        response = client.get(f"{BASE}/me", **attempt)
        assert response.status_code == 401
        answers.append(_dump(response))
    return answers


def _run_as_the_runner_would(flow_run_id: str) -> Any:
    """Run the flow in this process with the parameters the API submitted."""
    from prefect.client.orchestration import get_client

    from flows.background_change import background_change

    with get_client(sync_client=True) as prefect:
        parameters = prefect.read_flow_run(uuid.UUID(flow_run_id)).parameters
    return asyncio.run(
        background_change(
            uuid.UUID(parameters["pose_id"]),
            uuid.UUID(parameters["user_id"]),
            uuid.UUID(parameters["request_id"]),
            BackgroundChange.model_validate(parameters["change"]),
            return_state=True,
        )
    )


def _kept_by_prefect(api: str, run_id: str) -> list[str]:
    """What an operator reads in the Prefect UI: run and task states, run logs, artifacts."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # the run's logs reach the server in batches
    runs = {"flow_runs": {"id": {"any_": [run_id]}}}
    with httpx.Client(base_url=api, timeout=10) as prefect:
        flow_run = prefect.get(f"/flow_runs/{run_id}").json()
        task_runs = prefect.post("/task_runs/filter", json=runs).json()
        logs = prefect.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}})
        artifacts = prefect.post("/artifacts/filter", json={"limit": 200}).json()
    assert any(run["state"]["type"] == "FAILED" for run in task_runs)
    return [json.dumps(flow_run), json.dumps(task_runs), logs.text, json.dumps(artifacts)]


def _as_logged(record: logging.LogRecord) -> str:
    """A record as any handler could write it: message, arguments, extras and traceback."""
    traceback = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
    return f"{record.getMessage()}\n{json.dumps(vars(record), default=str)}\n{traceback}"


def _test_client_line(record: logging.LogRecord) -> bool:
    """httpx logging the request this test's own client sent (its URL carries the token on
    purpose); the API never sees that line."""
    return record.name == "httpx" and "http://testserver/" in record.getMessage()


def _dump(response: httpx.Response) -> str:
    return json.dumps({"headers": dict(response.headers), "body": response.text})
