"""End to end: API 202 → the served `background-change` deployment runs → the pose is updated.

The runner is a real `python -m deployments.serve` subprocess against the session's Prefect
server, so each flow run starts in a fresh process exactly as under `make run`.
"""

from __future__ import annotations

import io
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from posegen.auth import create_token
from posegen.db.session import session_scope
from posegen.domain.credits import balance, ledger_sum
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tests.conftest import make_user
from tests.flows.conftest import astronaut_png

pytestmark = pytest.mark.slow
BASE = "/api/apps/pose-generator"


def test_api_202_then_served_run_updates_the_pose(served: None, app_env: dict[str, str]) -> None:
    from posegen.api.app import create_app

    url = app_env["POSEGEN_DATABASE_URL"]
    user_id = make_user(url, credits=100)
    with session_scope(url) as session:
        generation = import_generation(session, get_storage(), user_id, [astronaut_png()])
        pose_id = generation.poses[0].id
    headers = {"Authorization": f"Bearer {create_token(user_id, 'USER')}"}

    with TestClient(create_app()) as client:
        accepted = client.post(
            f"{BASE}/poses/{pose_id}/background",
            json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
            headers=headers,
        )
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert body["poseId"] == str(pose_id)
        assert body["creditCharged"] == 10 and body["creditBalance"] == 90
        assert body["outputImageUrl"].endswith(f"{pose_id}_bg.png")
        uuid.UUID(body["flowRunId"])

        deadline = time.monotonic() + 150
        pose = client.get(f"{BASE}/poses/{pose_id}", headers=headers).json()
        while pose["status"] == "processing" and time.monotonic() < deadline:
            time.sleep(1)
            pose = client.get(f"{BASE}/poses/{pose_id}", headers=headers).json()
        assert pose["status"] == "ready", pose
        assert pose["backgroundChanged"] is True
        assert pose["backgroundColor"] == "#1E90FF"
        assert pose["imageUrl"] == body["outputImageUrl"]
        assert pose["imageUrl"] != pose["originalImageUrl"]

        image = client.get(pose["imageUrl"], headers=headers)
        assert image.status_code == 200
        result = Image.open(io.BytesIO(image.content)).convert("RGB")
        assert result.getpixel((result.width - 3, 3)) == (0x1E, 0x90, 0xFF)

    with session_scope(url) as session:
        assert balance(session, user_id) == 90 == ledger_sum(session, user_id)
