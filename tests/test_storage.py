"""Storage behaviour, the same on a local folder and on S3 (moto over HTTP), plus key validation."""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from posegen.config import reset_settings
from posegen.errors import NotFound, PosegenError, TransientError, ValidationFailed
from posegen.storage import Storage, get_storage, reset_storage, validate_key

TEMP_MARKER = ".posegen-tmp-"


def _s3(url: str, endpoint: str) -> Storage:
    return Storage(url, endpoint_url=endpoint, key="testing", secret="testing")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "storage"))
    return _s3(request.getfixturevalue("s3_storage_url"), request.getfixturevalue("s3_endpoint"))


def _bucket_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _leftovers(storage: Storage, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """What a failed or finished write may have left behind: temp files or open multiparts."""
    if storage.is_local:
        return [p.name for p in tmp_path.rglob("*") if p.name.startswith(TEMP_MARKER)]
    bucket = urlsplit(storage.url).netloc
    uploads = _bucket_client(request.getfixturevalue("s3_endpoint")).list_multipart_uploads(
        Bucket=bucket
    )
    return [u["Key"] for u in uploads.get("Uploads", [])]


class _ExplodingFile(io.BytesIO):
    """A source that fails after its first megabyte, like a disk error mid-copy."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)

    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell() >= 1024 * 1024:
            raise OSError("disk read failed mid-way")
        return super().read(min(size, 1024 * 1024) if size and size > 0 else 1024 * 1024)

    def readinto(self, buffer: Any, /) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _exploding_path(tmp_path: Path) -> Path:
    source = tmp_path / "big.zip"
    source.write_bytes(b"z" * (3 * 1024 * 1024))

    class ExplodingPath(type(source)):  # type: ignore[misc]
        def open(self, *args: Any, **kwargs: Any) -> Any:
            return _ExplodingFile(source.read_bytes())

    return ExplodingPath(source)


# -- behaviour shared by both backends -----------------------------------------------------------


def test_written_bytes_read_back_unchanged(storage: Storage) -> None:
    data = bytes(range(256)) * 100
    storage.write_bytes("poses/g1/p1.png", data, content_type="image/png")
    assert storage.read_bytes("poses/g1/p1.png") == data


def test_write_replaces_the_previous_object(storage: Storage) -> None:
    storage.write_bytes("poses/g1/p1.png", b"old")
    storage.write_bytes("poses/g1/p1.png", b"new content")
    assert storage.read_bytes("poses/g1/p1.png") == b"new content"
    assert storage.size("poses/g1/p1.png") == len(b"new content")


def test_write_file_streams_a_big_file(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "export.zip"
    source.write_bytes(b"PK" + b"x" * (3 * 1024 * 1024))
    storage.write_file("exports/g1/poses-g1.zip", source, content_type="application/zip")
    assert storage.size("exports/g1/poses-g1.zip") == source.stat().st_size
    assert storage.read_bytes("exports/g1/poses-g1.zip") == source.read_bytes()


def test_exists_follows_write_and_delete_at_once(storage: Storage) -> None:
    key = "uploads/u1/bg.jpg"
    assert not storage.exists(key)
    storage.write_bytes(key, b"jpeg")
    assert storage.exists(key)
    storage.delete(key)
    assert not storage.exists(key)
    assert storage.list("uploads/") == []


def test_a_folder_is_not_an_object(storage: Storage) -> None:
    storage.write_bytes("poses/g1/p1.png", b"x")
    assert not storage.exists("poses/g1")
    with pytest.raises(NotFound):
        storage.read_bytes("poses/g1")
    with pytest.raises(NotFound):
        storage.size("poses/g1")


def test_deleting_a_missing_object_is_fine(storage: Storage) -> None:
    storage.delete("poses/g1/never-written.png")


def test_list_returns_keys_starting_with_the_prefix(storage: Storage) -> None:
    for key in ("poses/g1/b.png", "poses/g1/a.png", "poses/g10/c.png", "exports/g1/x.zip"):
        storage.write_bytes(key, b"x")
    assert storage.list("poses/g1/") == ["poses/g1/a.png", "poses/g1/b.png"]
    assert storage.list("poses/g1") == ["poses/g1/a.png", "poses/g1/b.png", "poses/g10/c.png"]
    assert storage.list("poses/") == ["poses/g1/a.png", "poses/g1/b.png", "poses/g10/c.png"]
    assert storage.list("poses/g1/a") == ["poses/g1/a.png"]
    assert storage.list("poses/nothing/") == []
    assert storage.list("uploads/") == []


def test_missing_object_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound, match=r"^File not found$"):
        storage.read_bytes("poses/g1/missing.png")
    with pytest.raises(NotFound, match=r"^File not found$"):
        storage.size("poses/g1/missing.png")


def test_successful_writes_leave_nothing_behind(
    storage: Storage, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"s" * 4096)
    storage.write_bytes("poses/g1/p1.png", b"x")
    storage.write_file("exports/g1/poses-g1.zip", source)
    assert _leftovers(storage, request, tmp_path) == []
    assert storage.list("poses/") == ["poses/g1/p1.png"]
    assert storage.list("exports/") == ["exports/g1/poses-g1.zip"]


def test_failed_write_file_leaves_no_new_object(
    storage: Storage, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with pytest.raises((OSError, PosegenError)):
        storage.write_file("exports/g1/poses-g1.zip", _exploding_path(tmp_path))
    assert not storage.exists("exports/g1/poses-g1.zip")
    assert storage.list("exports/") == []
    assert _leftovers(storage, request, tmp_path) == []


def test_failed_write_file_keeps_the_previous_object(
    storage: Storage, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage.write_bytes("exports/g1/poses-g1.zip", b"previous zip")
    with pytest.raises((OSError, PosegenError)):
        storage.write_file("exports/g1/poses-g1.zip", _exploding_path(tmp_path))
    assert storage.read_bytes("exports/g1/poses-g1.zip") == b"previous zip"
    assert _leftovers(storage, request, tmp_path) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.read_bytes("poses/../x"),
        lambda s: s.write_bytes("poses/../x", b""),
        lambda s: s.write_file("poses/../x", Path(__file__)),
        lambda s: s.exists("poses/../x"),
        lambda s: s.delete("poses/../x"),
        lambda s: s.size("poses/../x"),
        lambda s: s.list("poses/../"),
        lambda s: s.local_path("poses/../x"),
        lambda s: s.client_url("poses/../x"),
    ],
    ids=[
        "read_bytes",
        "write_bytes",
        "write_file",
        "exists",
        "delete",
        "size",
        "list",
        "local_path",
        "client_url",
    ],
)
def test_every_method_refuses_a_bad_key(storage: Storage, call: Callable[[Storage], Any]) -> None:
    with pytest.raises(ValidationFailed, match=re.escape("'.' or '..' segment")):
        call(storage)


# -- local backend -------------------------------------------------------------------------------


def test_local_client_url_is_the_authenticated_download_route(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path))
    assert storage.client_url("poses/g1/p1.png") == "/api/apps/pose-generator/files/poses/g1/p1.png"
    assert storage.client_url("uploads/u1/my photo.png").endswith("uploads/u1/my%20photo.png")


def test_local_path_points_at_the_file(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "root"))
    storage.write_bytes("poses/g1/p1.png", b"png")
    path = storage.local_path("poses/g1/p1.png")
    assert path == (tmp_path / "root" / "poses" / "g1" / "p1.png").resolve()
    assert path is not None and path.read_bytes() == b"png"
    with pytest.raises(NotFound, match=r"^File not found$"):
        storage.local_path("poses/g1/missing.png")


def test_failed_local_write_bytes_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(str(tmp_path))

    def failing_fsync(fd: int) -> None:
        raise OSError("simulated disk failure")

    monkeypatch.setattr("posegen.storage.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated disk failure"):
        storage.write_bytes("poses/g1/p1.png", b"data")
    monkeypatch.undo()
    assert not storage.exists("poses/g1/p1.png")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


def test_local_ensure_bucket_creates_the_root(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "a" / "b"))
    storage.ensure_bucket()
    storage.ensure_bucket()
    assert (tmp_path / "a" / "b").is_dir()


# -- S3 backend ----------------------------------------------------------------------------------


def test_s3_presigned_url_downloads_the_object(s3_storage_url: str, s3_endpoint: str) -> None:
    storage = _s3(s3_storage_url, s3_endpoint)
    storage.write_bytes("poses/g1/p1.png", b"\x89PNG data", content_type="image/png")
    url = storage.client_url("poses/g1/p1.png", expires=120)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG data"
    assert response.headers["content-type"] == "image/png"


def test_s3_content_type_defaults_from_the_key(s3_storage_url: str, s3_endpoint: str) -> None:
    storage = _s3(s3_storage_url, s3_endpoint)
    storage.write_bytes("exports/g1/poses-g1.zip", b"PK")
    response = httpx.get(storage.client_url("exports/g1/poses-g1.zip"))
    assert response.headers["content-type"] == "application/zip"


def test_s3_objects_live_under_the_url_prefix(s3_storage_url: str, s3_endpoint: str) -> None:
    storage = _s3(s3_storage_url, s3_endpoint)
    storage.write_bytes("poses/g1/p1.png", b"x")
    bucket = urlsplit(s3_storage_url).netloc
    listed = _bucket_client(s3_endpoint).list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["prefix/poses/g1/p1.png"]


def test_s3_existence_is_never_stale_across_instances(
    s3_storage_url: str, s3_endpoint: str
) -> None:
    writer, reader = _s3(s3_storage_url, s3_endpoint), _s3(s3_storage_url, s3_endpoint)
    key = "poses/g1/p1.png"
    assert reader.list("poses/") == []
    assert not reader.exists(key)
    writer.write_bytes(key, b"x")
    assert reader.exists(key)
    assert reader.list("poses/") == [key]
    writer.delete(key)
    assert not reader.exists(key)
    assert reader.list("poses/") == []


def test_s3_local_path_is_none(s3_storage_url: str, s3_endpoint: str) -> None:
    assert _s3(s3_storage_url, s3_endpoint).local_path("poses/g1/p1.png") is None


def test_s3_ensure_bucket_creates_a_missing_bucket(s3_endpoint: str) -> None:
    storage = _s3(f"s3://posegen-new-{uuid.uuid4().hex[:12]}/root", s3_endpoint)
    storage.ensure_bucket()
    storage.ensure_bucket()
    storage.write_bytes("poses/g1/p1.png", b"x")
    assert storage.read_bytes("poses/g1/p1.png") == b"x"


def test_s3_unreachable_endpoint_is_transient() -> None:
    storage = _s3("s3://bucket/prefix", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(TransientError):
        storage.write_bytes("poses/g1/p1.png", b"x")


@pytest.fixture
def failing_s3_endpoint() -> Iterator[str]:
    """An S3 endpoint that answers every request with 500 InternalError."""

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
            self.send_response(500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _fail

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_s3_server_errors_are_transient(failing_s3_endpoint: str) -> None:
    storage = _s3("s3://bucket/prefix", failing_s3_endpoint)
    with pytest.raises(TransientError):
        storage.read_bytes("poses/g1/p1.png")


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["gs://bucket/prefix", "s3://", "s3:///prefix"])
def test_unsupported_storage_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationFailed, match="Storage URL"):
        Storage(url)


def test_get_storage_is_built_from_settings_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSEGEN_STORAGE_URL", str(tmp_path / "store"))
    reset_settings()
    reset_storage()
    try:
        storage = get_storage()
        assert storage is get_storage()
        assert storage.is_local
        storage.write_bytes("poses/g1/p1.png", b"x")
        assert (tmp_path / "store" / "poses" / "g1" / "p1.png").read_bytes() == b"x"
        monkeypatch.setenv("POSEGEN_STORAGE_URL", "s3://bucket/prefix")
        reset_settings()
        reset_storage()
        assert not get_storage().is_local
    finally:
        monkeypatch.undo()
        reset_settings()
        reset_storage()


# -- key validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "Storage key is empty."),
        ("/poses/g1/p1.png", "must be relative"),
        ("poses\\g1\\p1.png", "backslash"),
        ("poses/g1\\..\\..\\etc", "backslash"),
        ("poses/../etc/passwd", "'.' or '..' segment"),
        ("poses/g1/..", "'.' or '..' segment"),
        ("poses/./p1.png", "'.' or '..' segment"),
        ("poses//p1.png", "empty segment"),
        ("poses/g1/", "empty segment"),
        ("poses/%2e%2e/secret", "percent-encoded"),
        ("poses/%2E%2E/secret", "percent-encoded"),
        ("poses%2f..%2fsecret", "percent-encoded"),
        ("poses/%252e%252e/secret", "percent-encoded"),
        ("poses/%25252f", "percent-encoded"),
        ("poses/p1\x00.png", "control"),
        ("poses/p1\n.png", "control"),
        ("poses/p1\x1b.png", "control"),
        ("poses/p1\x7f.png", "control"),
        ("poses/p1\x85.png", "control"),
        ("secrets/p1.png", "must start with one of poses/, uploads/, exports/"),
        ("poses", "must start with one of"),
        ("Poses/p1.png", "must start with one of"),
        ("p" * 600, "longer than 512"),
        ("poses/" + "a" * 507, "longer than 512"),
        ("poses/\uff0e\uff0e/secret", "'.' or '..' segment"),
        ("poses\uff0f..\uff0fsecret", "'.' or '..' segment"),
        ("poses/g1/.posegen-tmp-abc", "reserved"),
    ],
)
def test_validate_key_refuses(key: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        validate_key(key)


@pytest.mark.parametrize(
    "key",
    [
        f"poses/{uuid.uuid4()}/{uuid.uuid4()}_bg.png",
        f"exports/{uuid.uuid4()}/{uuid.uuid4()}/instagram_story.jpg",
        "exports/g1/poses-g1.zip",
        "uploads/u1/my photo (1).png",
        "uploads/u1/v1.2..final.png",
        "poses/g1/.hidden",
        "poses/" + "a" * 506,
    ],
)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


def test_validate_key_returns_the_nfc_form() -> None:
    assert validate_key("uploads/u1/cafe\u0301.png") == "uploads/u1/caf\u00e9.png"
