"""POST /uploads: images are checked and stored re-encoded; anything else stores nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from posegen.api.app import create_app
from posegen.config import reset_settings
from posegen.storage import get_storage, reset_storage
from tests.api.conftest import BASE, Account, png_bytes

UPLOADS = f"{BASE}/uploads"


def _upload(client: TestClient, account: Account, data: bytes, name: str = "bg.png") -> object:
    return client.post(UPLOADS, files={"file": (name, data, "image/png")}, headers=account.headers)


def _stored_uploads() -> list[str]:
    return get_storage().list("uploads/")


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def small_upload_cap(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    cap = 100_000
    monkeypatch.setenv("POSEGEN_MAX_UPLOAD_BYTES", str(cap))
    reset_settings()
    yield cap
    reset_settings()


def test_png_upload_is_stored_as_png_under_the_users_folder(
    client: TestClient, account: Account
) -> None:
    response = client.post(
        UPLOADS,
        files={"file": ("bg.png", png_bytes((80, 60)), "image/png")},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith(f"uploads/{account.id}/") and body["key"].endswith(".png")
    assert body["url"] == f"{BASE}/files/{body['key']}"
    assert (body["width"], body["height"], body["contentType"]) == (80, 60, "image/png")
    stored = get_storage().read_bytes(body["key"])
    assert body["size"] == len(stored)
    with Image.open(io.BytesIO(stored)) as image:
        assert (image.format, image.size) == ("PNG", (80, 60))


def test_jpeg_upload_is_re_encoded_as_png(client: TestClient, account: Account) -> None:
    jpeg = _encoded(Image.new("RGB", (64, 48), "#884422"), "JPEG", quality=90)

    response = client.post(
        UPLOADS, files={"file": ("photo.jpg", jpeg, "image/jpeg")}, headers=account.headers
    )

    assert response.status_code == 201
    with Image.open(io.BytesIO(get_storage().read_bytes(response.json()["key"]))) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"this is not an image at all", "not an image"),
        (b"", "empty"),
        (_encoded(Image.new("1", (8000, 6000)), "PNG"), "too large"),
        (
            _encoded(
                Image.new("RGB", (32, 32), "red"),
                "PNG",
                save_all=True,
                append_images=[Image.new("RGB", (32, 32), "blue")],
            ),
            "Animated",
        ),
        (_encoded(Image.new("RGB", (32, 32), "red"), "GIF"), "GIF images are not supported"),
    ],
    ids=["text", "empty", "decompression-bomb", "animated-png", "gif"],
)
def test_refused_file_is_400_and_stores_nothing(
    client: TestClient, account: Account, data: bytes, message_part: str
) -> None:
    response = _upload(client, account, data)

    assert response.status_code == 400, response.text
    assert message_part in response.json()["message"]
    assert _stored_uploads() == []


def test_file_over_the_cap_is_400_and_stores_nothing(
    client: TestClient, account: Account, small_upload_cap: int
) -> None:
    # Over the cap, but within the multipart slack: refused while reading the file part.
    response = _upload(client, account, b"\0" * (small_upload_cap + 1000))

    assert response.status_code == 400
    assert "too large" in response.json()["message"]
    assert response.json()["maxBytes"] == small_upload_cap
    assert _stored_uploads() == []


def test_declared_body_far_over_the_cap_is_refused_before_reading(
    client: TestClient, account: Account, small_upload_cap: int
) -> None:
    response = _upload(client, account, b"\0" * (small_upload_cap * 3))

    assert response.status_code == 400
    assert "too large" in response.json()["message"]
    assert _stored_uploads() == []


def test_streamed_body_over_the_cap_is_cut_off(
    client: TestClient, account: Account, small_upload_cap: int
) -> None:
    """No Content-Length (chunked): the cap is enforced on the bytes as they arrive."""
    boundary = "posegen-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(50):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        UPLOADS,
        content=body(),
        headers={**account.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 400
    assert "too large" in response.json()["message"]
    assert _stored_uploads() == []


def test_upload_without_a_file_field_is_400(client: TestClient, account: Account) -> None:
    wrong_field = client.post(
        UPLOADS, files={"image": ("bg.png", png_bytes(), "image/png")}, headers=account.headers
    )
    json_body = client.post(UPLOADS, json={"file": "bg.png"}, headers=account.headers)

    assert wrong_field.status_code == json_body.status_code == 400
    assert "'file'" in wrong_field.json()["message"]
    assert _stored_uploads() == []


def test_upload_needs_a_token(client: TestClient) -> None:
    response = client.post(UPLOADS, files={"file": ("bg.png", png_bytes(), "image/png")})

    assert response.status_code == 401
    assert _stored_uploads() == []


@pytest.fixture
def s3_app_env(
    app_env: dict[str, str], s3_storage_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The same app on S3 (moto over HTTP): a refused upload must not leave an object, or a
    multipart upload half done, in the bucket either."""
    from tests.fixtures.s3 import S3_TEST_CREDENTIALS

    monkeypatch.setenv("POSEGEN_STORAGE_URL", s3_storage_url)
    monkeypatch.setenv("POSEGEN_S3_ENDPOINT_URL", s3_endpoint)
    for key, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("POSEGEN_MAX_UPLOAD_BYTES", "100000")
    reset_settings()
    reset_storage()
    yield s3_storage_url
    reset_settings()
    reset_storage()


def _bucket_contents(storage_url: str, endpoint: str) -> tuple[list[str], list[str]]:
    """Every object key in the test's bucket, and every multipart upload still open there."""
    import boto3

    from tests.fixtures.s3 import S3_TEST_CREDENTIALS

    bucket = storage_url.removeprefix("s3://").split("/", 1)[0]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return objects, uploads


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b"this is not an image at all", "not an image"),
        (b"\0" * 101_000, "too large"),
    ],
    ids=["text", "over-the-cap"],
)
def test_refused_upload_leaves_nothing_in_the_s3_bucket(
    s3_app_env: str, s3_endpoint: str, account: Account, data: bytes, message_part: str
) -> None:
    with TestClient(create_app()) as client:
        accepted = _upload(client, account, png_bytes())
        assert accepted.status_code == 201, accepted.text
        before = _bucket_contents(s3_app_env, s3_endpoint)
        response = _upload(client, account, data)

    assert response.status_code == 400, response.text
    assert message_part in response.json()["message"]
    assert _bucket_contents(s3_app_env, s3_endpoint) == before
    assert before[1] == [] and len(before[0]) == 1  # only the accepted upload
