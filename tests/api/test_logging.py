"""Structured logs: JSON lines with the request id (echoed to the client) and the flow run id,
and never a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.config import reset_settings
from posegen.logging import configure_logging
from tests.api.conftest import BASE, Account


@pytest.fixture
def json_log(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """POSEGEN_LOG_JSON=1, with posegen's handler writing into a buffer the test reads."""
    monkeypatch.setenv("POSEGEN_LOG_JSON", "1")
    reset_settings()
    buffer = io.StringIO()
    configure_logging(stream=buffer)
    yield buffer
    monkeypatch.delenv("POSEGEN_LOG_JSON")
    reset_settings()
    configure_logging()


@pytest.fixture
def json_client(json_log: io.StringIO) -> Iterator[TestClient]:
    app = create_app()
    configure_logging(stream=json_log)  # create_app() configured stderr; read the buffer instead
    with TestClient(app) as test_client:
        yield test_client


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def test_every_request_gets_an_id_echoed_and_on_its_log_lines(
    json_client: TestClient, json_log: io.StringIO, account: Account
) -> None:
    response = json_client.get(f"{BASE}/me", headers=account.headers)

    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    [access] = [line for line in _lines(json_log) if line["logger"] == "posegen.api.access"]
    assert access["request_id"] == request_id
    assert access["route"] == f"{BASE}/me"
    assert access["status"] == 200
    assert access["flow_run_id"] is None
    assert {"time", "level", "message", "duration_ms"} <= set(access)


def test_a_callers_request_id_is_kept_and_a_malformed_one_replaced(
    json_client: TestClient, json_log: io.StringIO
) -> None:
    kept = json_client.get(f"{BASE}/health", headers={"X-Request-ID": "lb-7f3a.42"})
    replaced = json_client.get(f"{BASE}/health", headers={"X-Request-ID": "a b" + "x" * 200})

    assert kept.headers["X-Request-ID"] == "lb-7f3a.42"
    assert replaced.headers["X-Request-ID"] != "a b" + "x" * 200
    ids = {line["request_id"] for line in _lines(json_log)}
    assert {"lb-7f3a.42", replaced.headers["X-Request-ID"]} <= ids


def test_no_token_reaches_the_log(
    json_client: TestClient, json_log: io.StringIO, account: Account
) -> None:
    json_client.get(f"{BASE}/me", headers=account.headers)
    json_client.get(f"{BASE}/me?access_token={account.token}", headers=account.headers)
    json_client.get(f"{BASE}/me", headers={"Authorization": f"Bearer {account.token}x"})
    # Whoever logs it by mistake, a token is blanked out.
    logging.getLogger("posegen.test").warning("Authorization: Bearer %s", account.token)
    logging.getLogger("posegen.test").warning("token %s", account.token)

    text = json_log.getvalue()
    assert len(_lines(json_log)) >= 5
    assert account.token not in text
    assert account.token.split(".")[2] not in text  # not even the signature


def test_lines_logged_inside_a_flow_run_carry_its_id(
    json_log: io.StringIO, prefect_api: str
) -> None:
    from prefect import flow
    from prefect.runtime import flow_run

    @flow
    async def logs_something() -> str:
        logging.getLogger("posegen.test").info("inside a run")
        return str(flow_run.get_id())

    run_id = asyncio.run(logs_something())

    [line] = [line for line in _lines(json_log) if line["message"] == "inside a run"]
    assert line["flow_run_id"] == run_id


def test_an_unexpected_error_is_logged_with_its_request_id(
    json_log: io.StringIO,
) -> None:
    app = create_app()
    configure_logging(stream=json_log)

    def boom() -> None:
        raise RuntimeError("bug")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    [line] = [line for line in _lines(json_log) if line["message"].startswith("Unhandled error")]
    assert line["request_id"] == "req-500"
    assert "RuntimeError: bug" in line["exception"]
