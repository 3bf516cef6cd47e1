"""End to end on the seed's WebSocket channel: a served background change is pushed as
`background_change_complete`, a FLUX failure as `background_change_failed` (refunded), and a
second user's socket hears nothing of either.

API on uvicorn, a served `background-change` deployment in a runner subprocess, the fake BFL
server for `ai_generate`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from posegen.api.app import create_app
from posegen.api.event_channel import channel_of
from posegen.auth import create_token
from posegen.config import reset_settings
from posegen.db.session import session_scope
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tests.conftest import make_user
from tests.fake_bfl import FakeBFLServer
from tests.flows.conftest import astronaut_png
from tests.sse import serve_api

pytestmark = pytest.mark.slow
BASE = "/api/apps/pose-generator"


@pytest.fixture
def served_with_flux(
    fake_bfl: FakeBFLServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[FakeBFLServer]:
    """The runner of `served`, started with FLUX pointed at the fake BFL server."""
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    reset_settings()
    request.getfixturevalue("served")
    yield fake_bfl


def _user(db_url: str) -> tuple[uuid.UUID, str]:
    user_id = make_user(db_url, credits=100)
    return user_id, create_token(user_id, "USER")


def _subscribed(api: str, user_id: uuid.UUID, token: str) -> ClientConnection:
    socket = connect(f"{api.replace('http://', 'ws://')}{BASE}/ws?token={token}", open_timeout=10)
    socket.send(json.dumps({"type": "subscribe", "channel": channel_of(user_id)}))
    assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"
    return socket


def _next(socket: ClientConnection, timeout: float) -> dict[str, Any] | None:
    try:
        return json.loads(socket.recv(timeout=timeout))
    except TimeoutError:
        return None


def test_a_change_completes_and_a_flux_failure_fails_on_the_owners_channel_only(
    served_with_flux: FakeBFLServer, app_env: dict[str, str]
) -> None:
    db_url = app_env["POSEGEN_DATABASE_URL"]
    owner_id, owner_token = _user(db_url)
    other_id, other_token = _user(db_url)
    with session_scope(db_url) as session:
        generation = import_generation(
            session, get_storage(), owner_id, [astronaut_png(), astronaut_png()]
        )
        colour_pose, flux_pose = (pose.id for pose in generation.poses)
    headers = {"Authorization": f"Bearer {owner_token}"}

    with serve_api(create_app()) as api:
        owner = _subscribed(api, owner_id, owner_token)
        other = _subscribed(api, other_id, other_token)
        try:
            accepted = httpx.post(
                f"{api}{BASE}/poses/{colour_pose}/background",
                json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
                headers=headers,
                timeout=30,
            )
            assert accepted.status_code == 202, accepted.text
            complete = _next(owner, timeout=150)
            assert complete is not None, "no background_change_complete"
            assert complete["type"] == "background_change_complete"
            assert complete["poseId"] == str(colour_pose)
            assert complete["imageUrl"] == accepted.json()["outputImageUrl"]
            assert complete["generationId"] == str(generation.id)
            assert (complete["backgroundMode"], complete["creditCharged"]) == ("solid_color", 10)

            served_with_flux.scenario = "content_moderated"
            refused = httpx.post(
                f"{api}{BASE}/poses/{flux_pose}/background",
                json={"backgroundMode": "ai_generate", "backgroundPrompt": "a quiet beach"},
                headers=headers,
                timeout=30,
            )
            assert refused.status_code == 202, refused.text
            failed = _next(owner, timeout=150)
            assert failed is not None, "no background_change_failed"
            assert failed["type"] == "background_change_failed"
            assert failed["poseId"] == str(flux_pose)
            assert failed["creditRefunded"] == 10
            assert failed["errorMessage"]

            assert _next(other, timeout=1) is None
        finally:
            owner.close()
            other.close()
