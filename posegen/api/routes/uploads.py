"""POST /uploads: a user's own background image, checked, re-encoded as PNG, stored under uploads/.

The body is parsed here rather than by FastAPI so its size can be refused while it arrives:
a declared Content-Length over the cap is refused before reading anything, and a body that
keeps coming is cut off at the cap instead of being spooled to disk first.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from posegen.api import schemas
from posegen.api.deps import CurrentUser, StorageDep
from posegen.api.rate_limit import RESPONSES as RATE_LIMITED
from posegen.api.rate_limit import Bucket, per_user
from posegen.config import get_settings
from posegen.errors import ValidationFailed
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_png

router = APIRouter(tags=["uploads"])

_FIELD = "file"
# Room for the multipart boundary and part headers around the file itself.
_MULTIPART_SLACK = 64 * 1024
_CHUNK = 256 * 1024
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [_FIELD],
                    "properties": {_FIELD: {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/uploads",
    status_code=201,
    response_model=schemas.Upload,
    openapi_extra=UPLOAD_BODY,
    responses={
        400: {"description": "Not an image we accept, too large, or animated"},
        **RATE_LIMITED,
    },
    dependencies=[per_user(Bucket.UPLOADS)],
)
async def upload_image(request: Request, user: CurrentUser, storage: StorageDep) -> schemas.Upload:
    """Store what a background change in `upload` mode uses as `backgroundImageUrl`.

    The stored file is our own re-encoding (no metadata, sRGB, one frame), never the bytes the
    client sent, so nothing hostile in the original can reach a worker or another viewer.
    """
    data = await read_image_field(request)
    png, width, height = await run_in_threadpool(_clean_png, data)
    key = f"uploads/{user.id}/{uuid.uuid4()}.png"
    await run_in_threadpool(storage.write_bytes, key, png, "image/png")
    return schemas.Upload(
        key=key,
        url=storage.client_url(key),
        width=width,
        height=height,
        content_type="image/png",
        size=len(png),
    )


def _clean_png(data: bytes) -> tuple[bytes, int, int]:
    image = open_image(data)
    return encode_png(image), image.width, image.height


async def read_image_field(request: Request) -> bytes:
    """The multipart field `file`, refused past `max_upload_bytes` while it arrives."""
    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise _too_large(limit)
    receive = _capped_receive(request.receive, limit + _MULTIPART_SLACK, limit)
    async with Request(request.scope, receive).form(max_files=1, max_fields=8) as form:
        upload = form.get(_FIELD)
        if not isinstance(upload, UploadFile):
            raise ValidationFailed(
                f"Send the image as the multipart/form-data field '{_FIELD}'.", field=_FIELD
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def _capped_receive(receive: Receive, body_limit: int, file_limit: int) -> Receive:
    """The request's receive, refusing once more than `body_limit` bytes have arrived."""
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > body_limit:
                raise _too_large(file_limit)
        return message

    return capped


def _too_large(limit: int) -> ValidationFailed:
    return ValidationFailed(
        f"The file is too large: at most {limit / (1024 * 1024):.1f} MB is accepted.",
        maxBytes=limit,
    )
