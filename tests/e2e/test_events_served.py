"""End to end: a client listening on GET /events hears its background change complete.

API on uvicorn, a served `background-change` deployment in a runner subprocess, the flow run's
own `posegen.background-change.completed` event relayed over SSE; another user hears nothing.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from posegen.api.app import create_app
from posegen.auth import create_token
from posegen.db.session import session_scope
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tests.conftest import make_user
from tests.flows.conftest import astronaut_png
from tests.sse import EventStream, serve_api

pytestmark = pytest.mark.slow
BASE = "/api/apps/pose-generator"


def _user(db_url: str) -> tuple[uuid.UUID, dict[str, str]]:
    user_id = make_user(db_url, credits=100)
    return user_id, {"Authorization": f"Bearer {create_token(user_id, 'USER')}"}


def test_stream_receives_background_change_completed_with_the_new_image_url(
    served: None, app_env: dict[str, str]
) -> None:
    db_url = app_env["POSEGEN_DATABASE_URL"]
    owner_id, owner = _user(db_url)
    _, other = _user(db_url)
    with session_scope(db_url) as session:
        generation = import_generation(session, get_storage(), owner_id, [astronaut_png()])
        pose_id = generation.poses[0].id

    with serve_api(create_app()) as api:
        owner_stream = EventStream.open(f"{api}{BASE}/events", owner)
        other_stream = EventStream.open(f"{api}{BASE}/events", other)
        try:
            assert owner_stream.response.status_code == 200
            assert other_stream.response.status_code == 200
            accepted = httpx.post(
                f"{api}{BASE}/poses/{pose_id}/background",
                json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
                headers=owner,
                timeout=30,
            )
            assert accepted.status_code == 202, accepted.text
            body = accepted.json()

            [message] = owner_stream.events(1, timeout=150)
            assert message.event == "background-change.completed"
            data = message.json
            assert data["id"] == message.id
            assert data["resourceId"] == f"posegen.pose.{pose_id}"
            assert data["payload"]["poseId"] == str(pose_id)
            assert data["payload"]["imageUrl"] == body["outputImageUrl"]
            pose = httpx.get(f"{api}{BASE}/poses/{pose_id}", headers=owner, timeout=10).json()
            assert pose["imageUrl"] == data["payload"]["imageUrl"]

            assert other_stream.events(1, timeout=1) == []
        finally:
            owner_stream.close()
            other_stream.close()
