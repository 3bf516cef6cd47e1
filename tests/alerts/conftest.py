"""Alert test fixtures: a database of their own (the figures are global counts), a
background-change deployment of their own on the session's Prefect server, and a webhook
receiver on loopback that the Prefect server's automation posts to."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from tests.conftest import _reset_caches, fresh_pg_database


@dataclass
class WebhookReceiver:
    """Collects every JSON body POSTed to it, as a chat tool's incoming webhook would."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def add(self, body: dict[str, Any], content_type: str) -> None:
        with self._arrived:
            self.messages.append(body)
            self.content_types.append(content_type)
            self._arrived.notify_all()

    def texts(self, containing: str) -> list[str]:
        with self._arrived:
            return [m["text"] for m in self.messages if containing in m.get("text", "")]

    def wait_for(self, containing: str, count: int, timeout: float = 60.0) -> list[str]:
        """Block until `count` messages contain `containing` (the automation is asynchronous)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.texts(containing)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"{count} webhook message(s) with {containing!r} did not arrive; "
                        f"got {self.messages}"
                    )
                self._arrived.wait(left)
            return self.texts(containing)


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver.add(body, self.headers.get("content-type", ""))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{server.server_port}/hooks/posegen")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def alerts_env(
    prefect_api: str, webhook: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """posegen pointed at a fresh PostgreSQL database, its own background-change deployment and
    the webhook; the alert automation in place (as `posegen up` makes it) and removed after."""
    from posegen.orchestration import ensure_alert_automation

    storage: Path = tmp_path_factory.mktemp("alerts-storage")
    deployment = f"background-change/alerts-{uuid.uuid4().hex[:8]}"
    with fresh_pg_database("posegen_alerts") as url, pytest.MonkeyPatch.context() as patch:
        env = {
            "POSEGEN_DATABASE_URL": url,
            "POSEGEN_STORAGE_URL": str(storage),
            "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": deployment,
            "POSEGEN_ALERT_WEBHOOK_URL": webhook.url,
        }
        for key, value in env.items():
            patch.setenv(key, value)
        _reset_caches()
        asyncio.run(_register_deployment(deployment))
        assert asyncio.run(ensure_alert_automation()) is not None
        try:
            yield env
        finally:
            patch.delenv("POSEGEN_ALERT_WEBHOOK_URL")
            _reset_caches()
            assert asyncio.run(ensure_alert_automation()) is None  # unset: removed
    _reset_caches()


async def _register_deployment(full_name: str) -> uuid.UUID:
    """A background-change deployment nobody serves: runs created for it stay where we put them."""
    flow_name, name = full_name.split("/")
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        return await client.create_deployment(flow_id=flow_id, name=name)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Change a setting for one test (undone, caches reset, afterwards)."""

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        _reset_caches()

    yield set_env  # type: ignore[misc]
    monkeypatch.undo()
    _reset_caches()
