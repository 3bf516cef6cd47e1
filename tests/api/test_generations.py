"""Generations over the API: the owner's list, a new one, and photos added one at a time."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from posegen.storage import get_storage
from tests.api.conftest import BASE, Account, Generated, png_bytes


def test_photos_added_one_by_one_become_poses_of_a_new_generation(
    client: TestClient, account: Account
) -> None:
    created = client.post(f"{BASE}/generations", headers=account.headers)
    generation_id = created.json()["id"]

    added = [
        client.post(
            f"{BASE}/generations/{generation_id}/poses",
            files={"file": (f"{n}.png", png_bytes(colour=colour), "image/png")},
            headers=account.headers,
        )
        for n, colour in enumerate(("#3366CC", "#CC6633"))
    ]

    assert (created.status_code, created.json()["poses"]) == (201, [])
    assert [answer.status_code for answer in added] == [201, 201]
    shown = client.get(f"{BASE}/generations/{generation_id}", headers=account.headers).json()
    assert [pose["id"] for pose in shown["poses"]] == [answer.json()["id"] for answer in added]
    assert all(pose["status"] == "ready" for pose in shown["poses"])
    assert len(get_storage().list(f"poses/{generation_id}/")) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image at all", "not an image"),
        (b"", "the file is empty"),
    ],
)
def test_a_refused_photo_is_400_and_leaves_the_generation_as_it_was(
    client: TestClient, account: Account, generated: Generated, data: bytes, message: str
) -> None:
    url = f"{BASE}/generations/{generated.generation_id}/poses"

    answer = client.post(url, files={"file": ("x.png", data, "image/png")}, headers=account.headers)

    assert answer.status_code == 400
    assert message in answer.json()["message"].lower()
    shown = client.get(f"{BASE}/generations/{generated.generation_id}", headers=account.headers)
    assert [pose["id"] for pose in shown.json()["poses"]] == [str(generated.pose_id)]
    assert get_storage().list(f"poses/{generated.generation_id}/") == [generated.image_key]


def test_a_photo_over_the_size_limit_is_refused_before_it_is_stored(
    client: TestClient, account: Account, generated: Generated, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posegen.config import reset_settings

    monkeypatch.setenv("POSEGEN_MAX_UPLOAD_BYTES", "1000")
    reset_settings()
    url = f"{BASE}/generations/{generated.generation_id}/poses"

    answer = client.post(
        url,
        files={"file": ("big.png", png_bytes((400, 400)), "image/png")},
        headers=account.headers,
    )

    assert (answer.status_code, answer.json()["maxBytes"]) == (400, 1000)
    assert get_storage().list(f"poses/{generated.generation_id}/") == [generated.image_key]
    reset_settings()


def test_the_list_is_the_owners_newest_first_with_counts_and_covers(
    client: TestClient,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> None:
    owner, other = new_account(), new_account()
    older = new_generation(owner)
    newer = client.post(f"{BASE}/generations", headers=owner.headers).json()
    new_generation(other)

    page = client.get(f"{BASE}/generations?limit=1", headers=owner.headers).json()
    rest = client.get(f"{BASE}/generations?limit=1&page=2", headers=owner.headers).json()

    assert page["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}
    assert [(g["id"], g["poseCount"], g["coverUrl"]) for g in page["items"]] == [
        (newer["id"], 0, None)
    ]
    [first] = rest["items"]
    assert (first["id"], first["poseCount"]) == (str(older.generation_id), 1)
    assert first["coverUrl"].endswith(older.image_key)


def test_someone_elses_generation_takes_no_photos(
    client: TestClient, new_account: Callable[..., Account], generated: Generated
) -> None:
    stranger = new_account()
    url = f"{BASE}/generations/{generated.generation_id}/poses"

    answer = client.post(
        url, files={"file": ("x.png", png_bytes(), "image/png")}, headers=stranger.headers
    )
    missing = client.post(
        f"{BASE}/generations/{uuid.uuid4()}/poses",
        files={"file": ("x.png", png_bytes(), "image/png")},
        headers=stranger.headers,
    )

    assert (answer.status_code, answer.json()) == (404, missing.json())
    assert get_storage().list(f"poses/{generated.generation_id}/") == [generated.image_key]
