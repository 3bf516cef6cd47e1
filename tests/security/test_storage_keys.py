"""Storage keys from outside (the download route's path, `backgroundImageUrl`) cannot climb out
of the storage root or reach another user's objects, however they are spelled or encoded.

A file planted next to the storage root must never come back, and storage must not even be
asked: the key is refused before any path is built. tests/test_storage.py checks
`validate_key` itself; tests/api/test_files.py a few refusals on the route.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.storage import Storage
from tests.api.conftest import (
    BASE,
    Account,
    Generated,
    assert_pose_untouched,
    balance,
    ledger,
)

pytestmark = pytest.mark.usefixtures("no_rate_limits")

SECRET = b"posegen-planted-secret-do-not-serve"


@pytest.fixture
def planted_secret(app_env: dict[str, str]) -> Path:
    """A file in the folder that holds the storage root, where `../` would lead."""
    root = Path(app_env["POSEGEN_STORAGE_URL"])
    root.mkdir(parents=True, exist_ok=True)
    secret = root.parent / "secret.txt"
    secret.write_bytes(SECRET)
    return secret


@pytest.fixture
def storage_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every key storage is asked to turn into a path (reads, existence checks, downloads)."""
    keys: list[str] = []
    path, local_path = Storage._path, Storage.local_path

    def spy_path(self: Storage, key: str) -> str:
        keys.append(key)
        return path(self, key)

    def spy_local_path(self: Storage, key: str) -> Path | None:
        keys.append(key)
        return local_path(self, key)

    monkeypatch.setattr(Storage, "_path", spy_path)
    monkeypatch.setattr(Storage, "local_path", spy_local_path)
    yield keys


def _traversals(own: uuid.UUID) -> list[str]:
    """Raw request paths after /files/, as an attacker's client would send them."""
    return [
        "uploads/../../secret.txt",
        f"uploads/{own}/../../../secret.txt",
        f"uploads/{own}/./x.png",
        "uploads/%2e%2e/%2e%2e/secret.txt",
        "uploads%2F..%2F..%2Fsecret.txt",
        f"uploads/{own}/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        f"uploads/{own}/..%2f..%2f..%2fsecret.txt",
        "uploads/%252e%252e/%252e%252e/secret.txt",
        f"uploads/{own}/%252e%252e%252f%252e%252e%252fsecret.txt",
        f"uploads/{own}/..%5c..%5c..%5csecret.txt",
        f"uploads/{own}/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/secret.txt",  # fullwidth dots
        f"uploads/{own}/x.png%00.txt",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "..%2F..%2Fsecret.txt",
        "secret.txt",
        f"uploads/{own}/.posegen-tmp-x.png",
    ]


def test_traversal_through_the_download_route_reads_nothing(
    app_env: dict[str, str], account: Account, planted_secret: Path, storage_reads: list[str]
) -> None:
    app = create_app()

    answers = {
        raw: _raw_get(app, f"{BASE}/files/{raw}", account) for raw in _traversals(account.id)
    }

    unexpected = {
        raw: (status, body)
        for raw, (status, body) in answers.items()
        if status not in (400, 404) or SECRET in body
    }
    assert unexpected == {}
    assert storage_reads == []


KEYS_AS_IMAGE_URL = [
    "uploads/../secret.txt",
    "uploads/{own}/../../secret.txt",
    "uploads/{own}/../{other}/bg.png",
    "uploads/{own}/%2e%2e/%2e%2e/secret.txt",
    "uploads/{own}/%252e%252e%252fsecret.txt",
    "uploads/{own}/..\\..\\secret.txt",
    "uploads/{own}/\uff0e\uff0e/\uff0e\uff0e/secret.txt",
    "uploads/{own}/bg.png\x00.txt",
    "/etc/passwd",
    "/uploads/{own}/bg.png",
    "../uploads/{own}/bg.png",
    "uploads//{own}/bg.png",
    "poses/{generation}/{pose}.png",
    "exports/{generation}/{pose}/tiktok.png",
    "s3://bucket/uploads/{own}/bg.png",
    "file:///etc/passwd",
    "uploads/{other}/bg.png",
]


def test_keys_as_background_image_url_are_400_read_nothing_and_charge_nothing(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    storage_reads: list[str],
) -> None:
    names = {
        "own": account.id,
        "other": uuid.uuid4(),
        "generation": generated.generation_id,
        "pose": generated.pose_id,
    }
    answers = {}
    for template in KEYS_AS_IMAGE_URL:
        body = {"backgroundMode": "upload", "backgroundImageUrl": template.format(**names)}
        response = client.post(
            f"{BASE}/poses/{generated.pose_id}/background", json=body, headers=account.headers
        )
        answers[template] = (response.status_code, response.json()["error"])

    refused = {template: answer for template, answer in answers.items() if answer[0] != 400}
    assert refused == {}
    assert storage_reads == []
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []
    assert_pose_untouched(db_url, generated.pose_id)


def _raw_get(app: FastAPI, raw_path: str, account: Account) -> tuple[int, bytes]:
    """GET exactly `raw_path`, as uvicorn hands it to the app (percent-decoded once, dot
    segments kept): HTTP clients, httpx included, remove `..` before sending."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {account.token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        # The (empty) request once; after that the client is gone, which a streamed response
        # waits for (it would otherwise poll forever).
        nonlocal requested
        if requested:
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body
