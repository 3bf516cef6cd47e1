"""Pictures of the community side: a request's uploaded reference and a library pose's image.

A reference is the author's own upload (an `uploads/` key), answered as a download URL that
whoever may see the request can fetch; someone else's upload is refused. A library pose's
picture is for every signed-in user. Any other upload stays its uploader's alone.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.api.conftest import png_bytes
from tests.pose_requests.conftest import BASE, Account


def _upload(client: TestClient, account: Account) -> dict[str, str]:
    answer = client.post(
        f"{BASE}/uploads",
        files={"file": ("ref.png", png_bytes(), "image/png")},
        headers=account.headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_an_uploaded_reference_is_seen_by_whoever_sees_the_request(
    client: TestClient, account: Account, new_account: Callable[..., Account]
) -> None:
    upload = _upload(client, account)
    created = client.post(
        f"{BASE}/requests",
        json={"poseName": "Arms crossed", "referenceImageUrl": upload["key"]},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    shown = created.json()["request"]["referenceImageUrl"]
    assert shown == upload["url"]

    other = new_account()
    assert client.get(shown, headers=other.headers).status_code == 200
    # An upload that is nobody's reference stays private.
    private = _upload(client, account)
    assert client.get(private["url"], headers=other.headers).status_code == 404


def test_someone_elses_upload_is_not_a_reference(
    client: TestClient, account: Account, new_account: Callable[..., Account]
) -> None:
    theirs = _upload(client, new_account())
    refused = client.post(
        f"{BASE}/requests",
        json={"poseName": "Arms crossed", "referenceImageUrl": theirs["key"]},
        headers=account.headers,
    )
    assert refused.status_code == 400
    assert refused.json()["message"] == "referenceImageUrl: not one of your uploads"


def test_a_library_pose_picture_is_for_every_signed_in_user(
    client: TestClient, admin: Account, account: Account
) -> None:
    upload = _upload(client, admin)
    item = client.post(
        f"{BASE}/admin/library",
        json={"name": "Hand on hip", "imageKey": upload["key"]},
        headers=admin.headers,
    )
    assert item.status_code == 201, item.text
    assert client.get(item.json()["imageUrl"], headers=account.headers).status_code == 200
