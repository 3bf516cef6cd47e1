"""GET /files/{key}: downloads of stored images, for the user who owns them (and the
community's pictures: library poses for everyone, a request's reference for whoever sees it).

Local storage is served here, behind the bearer token; on S3 the same ownership check runs and
the client is redirected to a short-lived presigned URL, so S3 never needs to be public.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from posegen.api.deps import CurrentUser, SessionDep, StorageDep
from posegen.db.models import User
from posegen.domain.pose_library import is_library_image
from posegen.domain.pose_requests import reference_image_readable
from posegen.domain.poses import owner_of_key
from posegen.errors import NotFound
from posegen.storage import validate_key

router = APIRouter(tags=["files"])

# The same answer for someone else's file and a missing one: never reveal which keys exist.
_NOT_FOUND = "File not found"


@router.get(
    "/files/{key:path}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "application/zip": {}}},
        307: {"description": "S3 storage: redirect to a presigned URL"},
        400: {"description": "Not a valid storage key"},
        404: {"description": "No such file, or not yours"},
    },
)
def download_file(
    key: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> Response:
    key = validate_key(key)
    if not _readable(session, user, key):
        raise NotFound(_NOT_FOUND)
    if not storage.is_local:
        return RedirectResponse(storage.client_url(key), status_code=307)
    path = storage.local_path(key)
    if path is None:
        raise NotFound(_NOT_FOUND)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    # Private: the response depends on the token; nosniff: serve only as the declared type.
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=media_type, headers=headers)


def _readable(session: Session, user: User, key: str) -> bool:
    if owner_of_key(session, key) == user.id:
        return True
    if not key.startswith("uploads/"):
        return False
    return is_library_image(session, key) or reference_image_readable(session, user, key)
