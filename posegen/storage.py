"""Object storage: key validation and one fsspec interface over a local folder or S3 (s3fs).

Keys are relative, slash-separated and start with one of `KEY_PREFIXES`; they are the only thing
flows and the API pass around, so a key is validated on every call before it touches a path.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, urlsplit

from fsspec.asyn import sync
from fsspec.implementations.local import LocalFileSystem

from posegen.api.paths import BASE_PATH
from posegen.config import get_settings
from posegen.errors import NotFound, PermanentError, PosegenError, TransientError, ValidationFailed

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem
    from s3fs import S3FileSystem

__all__ = [
    "KEY_PREFIXES",
    "LOCAL_FILES_ROUTE",
    "MAX_KEY_LENGTH",
    "Storage",
    "get_storage",
    "reset_storage",
    "validate_key",
]

KEY_PREFIXES = ("poses/", "uploads/", "exports/")
MAX_KEY_LENGTH = 512
# The authenticated API route that serves local files; S3 hands out presigned URLs instead.
LOCAL_FILES_ROUTE = f"{BASE_PATH}/files/"
# A presigned SigV4 URL cannot live longer than 7 days.
_MAX_URL_EXPIRES = 7 * 24 * 3600
# Local writes go to a temp file next to the target; the name is reserved so that a key can never
# address one and listings never show one.
_TEMP_PREFIX = ".posegen-tmp-"
_FILE_NOT_FOUND = "File not found"


def validate_key(key: str) -> str:
    """Return the key in NFC form, or refuse it with a message that says what is wrong.

    Keys come from URLs and request bodies; refusing every non-canonical form (rather than
    cleaning it up) means one object has exactly one key, and no key can reach outside the
    storage root, on a filesystem or through the local download route.
    """
    if not isinstance(key, str):
        raise ValidationFailed("Storage key must be a string.")
    if not key:
        raise ValidationFailed("Storage key is empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Storage key is longer than {MAX_KEY_LENGTH} characters.")
    normalized = unicodedata.normalize("NFC", key)
    _check_shape(normalized)
    # Compatibility forms (fullwidth dot U+FF0E, solidus U+FF0F) become '.' and '/' in some tools:
    # refuse a key whose compatibility form would not itself be a valid key.
    compatible = unicodedata.normalize("NFKC", normalized)
    if compatible != normalized:
        _check_shape(compatible)
    if not normalized.startswith(KEY_PREFIXES):
        raise ValidationFailed(
            f"Storage key must start with one of {', '.join(KEY_PREFIXES)} (got {key[:40]!r})."
        )
    return normalized


def _check_shape(key: str) -> None:
    """The structural rules, applied to a key and to its compatibility form."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise ValidationFailed("Storage key contains a control or invalid character.")
    if "\\" in key:
        raise ValidationFailed("Storage key contains a backslash; use '/' between segments.")
    # Any '%' is refused, not only '%2e'/'%2f': a key travels through URLs, where one more
    # decoding round (double encoding, '%252e') could turn it into a traversal later.
    if "%" in key:
        raise ValidationFailed("Storage key contains '%'; percent-encoded keys are not allowed.")
    if key.startswith("/"):
        raise ValidationFailed("Storage key must be relative, not start with '/'.")
    segments = key.split("/")
    if any(segment == "" for segment in segments):
        raise ValidationFailed("Storage key has an empty segment ('//' or a trailing '/').")
    if any(segment in (".", "..") for segment in segments):
        raise ValidationFailed("Storage key has a '.' or '..' segment.")
    if any(segment.startswith(_TEMP_PREFIX) for segment in segments):
        raise ValidationFailed(f"Storage key uses the reserved name prefix {_TEMP_PREFIX!r}.")


def _validate_prefix(prefix: str) -> str:
    """A listing prefix is a key prefix; it may end with '/' to name a folder."""
    if prefix in KEY_PREFIXES:
        return prefix
    if prefix.endswith("/"):
        return validate_key(prefix[:-1]) + "/"
    return validate_key(prefix)


def _guess_content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class Storage:
    """One storage root — a local folder or `s3://bucket/prefix` — addressed by validated keys.

    Reads, listings and deletes share fsspec; writes differ per backend because fsspec offers
    no atomic write: locally a temp file is renamed over the target, on S3 one PUT replaces the
    object, so a reader sees the old object or the new one, never a partial one.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self._bucket = ""
        self._prefix = ""
        self._s3: S3FileSystem | None = None
        self._fs: AbstractFileSystem
        if parts.scheme == "s3":
            self._bucket = parts.netloc
            if not self._bucket:
                raise ValidationFailed(f"Storage URL {url!r} has no bucket (s3://bucket/prefix).")
            self._prefix = parts.path.strip("/")
            self._s3 = _make_s3fs(endpoint_url=endpoint_url, key=key, secret=secret)
            self._fs = self._s3
            self._root = "/".join(p for p in (self._bucket, self._prefix) if p)
        elif parts.scheme in ("", "file"):
            local = parts.path if parts.scheme == "file" else url
            self._local_root = Path(local).expanduser().resolve()
            self._fs = LocalFileSystem()
            self._root = self._local_root.as_posix()
        else:
            raise ValidationFailed(
                f"Storage URL must be a local folder or s3://bucket/prefix (got {url!r})."
            )

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    @property
    def is_local(self) -> bool:
        return self._s3 is None

    def ensure_bucket(self) -> None:
        """Create the root (local folder or S3 bucket) if missing; explicit so nothing is
        created by accident against a mistyped production bucket name."""
        if self._s3 is None:
            self._local_root.mkdir(parents=True, exist_ok=True)
            return
        with self._errors(writing=True):
            if not self._s3.exists(self._bucket):
                with suppress(FileExistsError):  # created meanwhile by another process
                    self._s3.mkdir(self._bucket)
            self._s3.invalidate_cache(self._bucket)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(validate_key(key))
        with self._errors():
            data = self._fs.cat_file(path)
        return bytes(data)

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Replace the object atomically. `content_type` is stored on S3 (what a presigned GET
        answers with); locally the download route guesses it from the key."""
        key = validate_key(key)
        if self._s3 is None:
            self._write_local(key, lambda out: out.write(data))
        else:
            self._put_object(key, data, content_type)

    def write_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        """Like `write_bytes`, streamed from a file so big ZIPs never sit in memory."""
        key = validate_key(key)
        with path.open("rb") as source:
            if self._s3 is None:
                self._write_local(key, lambda out: _copy(source, out))
            else:
                self._put_object(key, source, content_type)

    def exists(self, key: str) -> bool:
        """True for an object; a "folder" (a prefix of other keys) is not one."""
        path = self._path(validate_key(key))
        try:
            with self._errors():
                info = self._fs.info(path)
        except NotFound:
            return False
        return info.get("type") == "file"

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing one is not an error (deletes are retried)."""
        path = self._path(validate_key(key))
        with suppress(NotFound), self._errors():
            self._fs.rm_file(path)
        self._fs.invalidate_cache(path)

    def size(self, key: str) -> int:
        path = self._path(validate_key(key))
        with self._errors():
            info = self._fs.info(path)
            if info.get("type") != "file":
                raise FileNotFoundError(path)
        return int(info["size"])

    def list(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, sorted, as S3 lists; end it with '/' for a folder."""
        prefix = _validate_prefix(prefix)
        folder = prefix.rsplit("/", 1)[0]
        try:
            with self._errors():
                paths = self._fs.find(self._path(folder))
        except NotFound:
            return []
        base = self._root + "/"
        keys = []
        for path in paths:
            key = path[len(base) :] if path.startswith(base) else None
            if key is None or not key.startswith(prefix):
                continue
            # Temp files of in-flight local writes, directory markers and objects written
            # by other tools under names we refuse cannot be addressed, so they are not listed.
            try:
                keys.append(validate_key(key))
            except ValidationFailed:
                continue
        return sorted(keys)

    def local_path(self, key: str) -> Path | None:
        """The file behind a key, for streaming responses; None on S3. NotFound if missing."""
        key = validate_key(key)
        if self._s3 is not None:
            return None
        path = self._local_root / key
        if not path.is_file():
            raise NotFound(_FILE_NOT_FOUND)
        return path

    def client_url(self, key: str, expires: int = 3600) -> str:
        """A URL a client can fetch: presigned GET on S3 (valid `expires` seconds); locally the
        API's authenticated download route, which needs the caller's bearer token instead."""
        key = validate_key(key)
        if self._s3 is None:
            return LOCAL_FILES_ROUTE + quote(key, safe="/")
        if not 1 <= expires <= _MAX_URL_EXPIRES:
            raise ValidationFailed(f"URL expiry must be 1 to {_MAX_URL_EXPIRES} seconds.")
        with self._errors():
            return str(self._s3.url(self._path(key), expires=expires))

    # -- internals ---------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _write_local(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        """Temp file in the target's folder (same filesystem, so the rename is atomic), fsync
        before the rename so a crash cannot leave a renamed but empty file."""
        target = self._local_root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide files from other readers
            os.replace(tmp_name, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)

    def _put_object(self, key: str, body: bytes | BinaryIO, content_type: str | None) -> None:
        """One PutObject: S3 makes it visible only once complete, and unlike s3fs's writers
        (multipart above a size) it never leaves an unfinished upload behind."""
        assert self._s3 is not None
        s3 = self._s3
        object_key = "/".join(p for p in (self._prefix, key) if p)

        async def put() -> None:
            # The client directly, not s3fs's retry wrapper: that one would resend a file body
            # from wherever the failed attempt left it; botocore's own retries rewind it.
            await s3.set_session()
            client = await s3.get_s3(self._bucket)
            await client.put_object(
                Bucket=self._bucket,
                Key=object_key,
                Body=body,
                ContentType=content_type or _guess_content_type(key),
            )

        try:
            with self._errors(writing=True):
                sync(s3.loop, put)
        finally:
            s3.invalidate_cache(self._path(key))

    @contextmanager
    def _errors(self, *, writing: bool = False) -> Iterator[None]:
        """Turn backend errors into posegen's: missing → NotFound, S3 network/5xx/429 →
        TransientError (worth a retry), refused credentials → PermanentError."""
        try:
            yield
        except PosegenError:
            raise
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            if writing and self._s3 is not None:  # only a missing bucket makes a PUT "not found"
                raise PermanentError(f"Storage bucket {self._bucket!r} does not exist.") from exc
            if writing:
                raise
            raise NotFound(_FILE_NOT_FOUND) from exc
        except Exception as exc:
            if self._s3 is None:
                raise
            status = _s3_status(exc)
            if status == 404 and not writing:
                raise NotFound(_FILE_NOT_FOUND) from exc
            if status == 404:
                raise PermanentError(f"Storage bucket {self._bucket!r} does not exist.") from exc
            if _is_transient(exc, status):
                raise TransientError(f"Storage is unavailable, try again: {exc}") from exc
            if isinstance(exc, PermissionError) or status == 403:
                raise PermanentError(f"Storage refused the request: {exc}") from exc
            raise


def _make_s3fs(*, endpoint_url: str | None, key: str | None, secret: str | None) -> S3FileSystem:
    """An S3 filesystem that cannot answer from stale state, and fails fast when S3 is down.

    Listing cache off and a private instance: existence must change the moment a write or delete
    returns, even across Storage objects. SigV4 because R2 and MinIO refuse the SigV2 presigned
    URLs botocore makes by default for custom endpoints. Checksums only when required, because
    some S3-compatible services reject botocore's default CRC trailers. Few, short retries: the
    Prefect task around the call retries a TransientError with backoff.
    """
    from s3fs import S3FileSystem

    return S3FileSystem(
        key=key,
        secret=secret,
        endpoint_url=endpoint_url,
        skip_instance_cache=True,
        use_listings_cache=False,
        config_kwargs={
            "signature_version": "s3v4",
            "connect_timeout": 5,
            "read_timeout": 60,
            "retries": {"max_attempts": 2, "mode": "standard"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
    )


def _s3_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore error, also when s3fs re-raised it as an OSError."""
    for error in (exc, exc.__cause__):
        response: Any = getattr(error, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
    return None


def _is_transient(exc: BaseException, status: int | None) -> bool:
    from aiohttp import ClientError as AiohttpError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError
    from fsspec.exceptions import FSTimeoutError

    if status is not None:
        return status >= 500 or status == 429
    network = (
        TimeoutError,
        ConnectionError,
        BotoConnectionError,
        HTTPClientError,
        AiohttpError,
        FSTimeoutError,
    )
    # s3fs maps 500/503/SlowDown without keeping the status to these errnos.
    return isinstance(exc, network) or getattr(exc, "errno", None) in (errno.EBUSY, errno.EREMOTEIO)


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    while chunk := source.read(1024 * 1024):
        out.write(chunk)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some platforms cannot open folders, which is fine."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_cache_lock = threading.Lock()
_cached: tuple[int, Storage] | None = None


def get_storage() -> Storage:
    """The process's Storage, from settings. Keyed by pid: an s3fs client belongs to the event
    loop thread of the process that made it, so a forked worker builds its own."""
    global _cached
    with _cache_lock:
        if _cached is None or _cached[0] != os.getpid():
            settings = get_settings()
            secret = settings.s3_secret.get_secret_value() if settings.s3_secret else None
            storage = Storage(
                settings.storage,
                endpoint_url=settings.s3_endpoint_url,
                key=settings.s3_key,
                secret=secret,
            )
            _cached = (os.getpid(), storage)
        return _cached[1]


def reset_storage() -> None:
    """Forget the cached Storage (tests change the settings between cases)."""
    global _cached
    with _cache_lock:
        _cached = None
