"""Authorization: another user's ids look exactly like ids that name nothing, and only
administrators reach admin routes. Every route comes from `app.routes`.

Each route that takes an id is called by a stranger twice: once with the victim's real ids,
once with fresh ids. Both answers must be 404 with the same body, byte for byte, so a stranger
cannot even learn that an id exists; afterwards the victim's credits, pose, request and files
are as they were. tests/api covers GET /poses, /generations and /files this way; here it is
every route, writes and downloads included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.storage import get_storage
from tests.api.conftest import (
    BASE,
    Account,
    Generated,
    balance,
    ledger,
    png_bytes,
    pose_status,
)
from tests.security.routes import Route, inventory, sample_path_values

# The API's routes; the web app's pages take a browser session instead (tests/web sweeps them).
ROUTES = [route for route in inventory(create_app()) if route.is_api]
ID_PARAMS = frozenset({"pose_id", "generation_id", "request_id", "project_id", "key"})
# Ids of things every user may read: the shared pose library, and the community board (any
# seller reads and votes on others' requests; with POSEGEN_POSE_REQUESTS_PREMODERATION on,
# tests/pose_requests shows a pending one is a 404 to them like any missing id).
SHARED = frozenset(
    {
        "GET /library/{pose_id}",
        "GET /requests/{request_id}",
        "POST /requests/{request_id}/vote",
        "DELETE /requests/{request_id}/vote",
    }
)
OWNED = [
    route
    for route in ROUTES
    if set(route.params) & ID_PARAMS and not route.needs_admin and route.label not in SHARED
]
ADMIN = [route for route in ROUTES if route.needs_admin]
# Valid bodies, so that what refuses a stranger is ownership, not validation.
BODIES: dict[str, dict[str, Any]] = {
    "POST /poses/{pose_id}/background": {
        "backgroundMode": "solid_color",
        "backgroundColor": "#FF8800",
    },
    "POST /generations/{generation_id}/exports": {"formats": ["instagram_feed"]},
    "POST /poses/{pose_id}/regenerate-export": {"format": "instagram_feed"},
    "PATCH /projects/{project_id}": {"name": "Renamed by a stranger"},
}


@dataclass(frozen=True)
class Victim:
    account: Account
    generated: Generated
    request_id: str
    project_id: str
    upload_key: str
    export_key: str

    def path_values(self) -> dict[str, str]:
        return {
            "pose_id": str(self.generated.pose_id),
            "generation_id": str(self.generated.generation_id),
            "request_id": self.request_id,
            "project_id": self.project_id,
            "key": self.generated.image_key,
        }

    @property
    def keys(self) -> list[str]:
        """One stored file of each kind: pose image, own upload, rendered export."""
        return [self.generated.image_key, self.upload_key, self.export_key]


@pytest.fixture
def victim(
    client: TestClient,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> Victim:
    """A user with a generation, a pending pose request, an upload and a rendered export."""
    account = new_account()
    generated = new_generation(account)
    request = client.post(
        f"{BASE}/requests", json={"poseName": "Hands on hips"}, headers=account.headers
    )
    upload = client.post(
        f"{BASE}/uploads",
        files={"file": ("bg.png", png_bytes(), "image/png")},
        headers=account.headers,
    )
    project = client.post(
        f"{BASE}/projects", json={"name": "Victim's catalog"}, headers=account.headers
    )
    assert (request.status_code, upload.status_code, project.status_code) == (201, 201, 201)
    export_key = f"exports/{generated.generation_id}/{generated.pose_id}/instagram_feed.png"
    get_storage().write_bytes(export_key, png_bytes(), "image/png")
    return Victim(
        account,
        generated,
        request.json()["request"]["id"],
        project.json()["id"],
        upload.json()["key"],
        export_key,
    )


def test_every_route_with_an_id_is_swept_or_listed_as_shared() -> None:
    """A new route that takes an id lands in OWNED (and the sweep) unless it is listed here."""
    with_ids = {route.label for route in ROUTES if set(route.params) & ID_PARAMS}
    unknown_params = {p for route in ROUTES for p in route.params} - ID_PARAMS

    assert unknown_params == set(), "teach ID_PARAMS and Victim.path_values the new id"
    assert with_ids == {r.label for r in OWNED} | {r.label for r in ADMIN if r.params} | SHARED
    assert {r.label for r in OWNED if r.takes_body} == set(BODIES), "BODIES needs a valid body"
    assert len(OWNED) >= 13


def test_the_victims_ids_are_real(client: TestClient, victim: Victim) -> None:
    """Guards the sweep against passing vacuously: the owner does get these."""
    values, headers = victim.path_values(), victim.account.headers

    assert client.get(f"{BASE}/poses/{values['pose_id']}", headers=headers).status_code == 200
    assert client.get(f"{BASE}/requests/{values['request_id']}", headers=headers).status_code == 200
    for key in victim.keys:
        assert client.get(f"{BASE}/files/{key}", headers=headers).status_code == 200, key


def test_someone_elses_ids_look_exactly_like_missing_ones_on_every_route(
    client: TestClient, db_url: str, new_account: Callable[..., Account], victim: Victim
) -> None:
    stranger = new_account()

    differences = {}
    for route in OWNED:
        theirs = _call(client, route, victim.path_values(), stranger)
        missing = _call(client, route, sample_path_values(), stranger)
        if theirs[0] != 404 or theirs != missing:
            differences[route.label] = (theirs, missing)
    for key in victim.keys:
        prefix = key.split("/", 1)[0]
        theirs = client.get(f"{BASE}/files/{key}", headers=stranger.headers)
        absent = f"{prefix}/{uuid.uuid4()}/{uuid.uuid4()}.png"
        missing = client.get(f"{BASE}/files/{absent}", headers=stranger.headers)
        if theirs.status_code != 404 or theirs.content != missing.content:
            differences[key] = ((theirs.status_code, theirs.text), (missing.status_code, ""))

    assert differences == {}
    _assert_victim_untouched(client, db_url, victim)
    assert balance(db_url, stranger.id) == 100
    assert ledger(db_url, stranger.id) == []


def test_every_admin_route_is_403_for_a_user(
    client: TestClient, db_url: str, new_account: Callable[..., Account], victim: Victim
) -> None:
    user = new_account()

    answers = {route.label: _call(client, route, victim.path_values(), user) for route in ADMIN}

    assert len(answers) >= 10
    refused = (403, {"error": "Forbidden", "message": "This needs an administrator."})
    assert {label: answer for label, answer in answers.items() if answer != refused} == {}
    _assert_victim_untouched(client, db_url, victim)


def _call(
    client: TestClient, route: Route, values: dict[str, str], account: Account
) -> tuple[int, Any]:
    response = client.request(
        route.method,
        route.url(values),
        json=BODIES.get(route.label),
        headers=account.headers,
    )
    body = response.json() if response.content else None
    return response.status_code, body


def _assert_victim_untouched(client: TestClient, db_url: str, victim: Victim) -> None:
    account = victim.account
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []
    assert pose_status(db_url, victim.generated.pose_id) == "ready"
    request = client.get(f"{BASE}/requests/{victim.request_id}", headers=account.headers).json()
    assert (request["status"], request["votesCount"]) == ("pending", 0)
    project = client.get(f"{BASE}/projects/{victim.project_id}", headers=account.headers).json()
    assert project["name"] == "Victim's catalog"
    for key in victim.keys:
        assert get_storage().exists(key), key
