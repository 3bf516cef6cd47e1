"""GET /files/{key}: owners download their images; everyone else sees 404, like a missing key."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from posegen.config import reset_settings
from posegen.storage import get_storage, reset_storage
from tests.api.conftest import BASE, Account, Generated, png_bytes

FILES = f"{BASE}/files"


def test_owner_downloads_pose_image(
    client: TestClient, account: Account, generated: Generated
) -> None:
    response = client.get(f"{FILES}/{generated.image_key}", headers=account.headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == get_storage().read_bytes(generated.image_key)


def test_pose_url_from_the_api_downloads_the_image(
    client: TestClient, account: Account, generated: Generated
) -> None:
    pose = client.get(f"{BASE}/poses/{generated.pose_id}", headers=account.headers).json()

    response = client.get(pose["imageUrl"], headers=account.headers)

    assert response.status_code == 200
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_uploader_downloads_own_upload(client: TestClient, account: Account) -> None:
    upload = client.post(
        f"{BASE}/uploads",
        files={"file": ("bg.png", png_bytes(), "image/png")},
        headers=account.headers,
    ).json()

    response = client.get(upload["url"], headers=account.headers)

    assert response.status_code == 200
    assert len(response.content) == upload["size"]


def test_someone_elses_file_looks_exactly_like_a_missing_one(
    client: TestClient, new_account: Callable[..., Account], generated: Generated
) -> None:
    stranger = new_account()

    theirs = client.get(f"{FILES}/{generated.image_key}", headers=stranger.headers)
    missing_generation = client.get(
        f"{FILES}/poses/{uuid.uuid4()}/{uuid.uuid4()}.png", headers=stranger.headers
    )
    missing_own = client.get(
        f"{FILES}/uploads/{stranger.id}/{uuid.uuid4()}.png", headers=stranger.headers
    )

    assert theirs.status_code == missing_generation.status_code == missing_own.status_code == 404
    assert theirs.json() == missing_generation.json() == missing_own.json()


@pytest.mark.parametrize(
    "path",
    ["uploads/%2E%2E/secret.png", "etc/passwd/x", "uploads/a%5Cb/c.png", "poses//x.png"],
)
def test_invalid_key_is_400(client: TestClient, account: Account, path: str) -> None:
    response = client.get(f"{FILES}/{path}", headers=account.headers)

    assert response.status_code == 400
    assert response.json()["error"] == "ValidationFailed"


def test_download_needs_a_token(client: TestClient, generated: Generated) -> None:
    assert client.get(f"{FILES}/{generated.image_key}").status_code == 401


def test_s3_storage_redirects_the_owner_to_a_presigned_url(
    app_env: dict[str, str],
    s3_endpoint: str,
    s3_storage_url: str,
    monkeypatch: pytest.MonkeyPatch,
    client: TestClient,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> None:
    monkeypatch.setenv("POSEGEN_STORAGE_URL", s3_storage_url)
    monkeypatch.setenv("POSEGEN_S3_ENDPOINT_URL", s3_endpoint)
    reset_settings()
    reset_storage()
    get_storage().ensure_bucket()
    owner, stranger = new_account(), new_account()
    generated = new_generation(owner)
    url = f"{FILES}/{generated.image_key}"

    redirect = client.get(url, headers=owner.headers, follow_redirects=False)
    refused = client.get(url, headers=stranger.headers, follow_redirects=False)

    assert redirect.status_code == 307
    presigned = redirect.headers["location"]
    assert presigned.startswith(s3_endpoint) and "Signature" in presigned
    assert httpx.get(presigned).content == get_storage().read_bytes(generated.image_key)
    assert refused.status_code == 404
