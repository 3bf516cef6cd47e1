"""Route dependencies as named types: who may call a route and what it touches.

A route's signature (`user: CurrentUser, session: SessionDep`) is its whole access policy;
no route body checks tokens or opens sessions itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from posegen.auth import decode_token
from posegen.db.models import Role, User
from posegen.db.session import get_sessionmaker
from posegen.domain.sign_in import CSRF_HEADER, SESSION_COOKIE, csrf_matches, find_session
from posegen.domain.users import get_user
from posegen.errors import Forbidden, NotFound, Unauthorized
from posegen.storage import Storage, get_storage

# auto_error=False: FastAPI's own refusal would be a 403 in its body shape; ours is a 401.
_bearer = HTTPBearer(auto_error=False, description="A posegen JWT (`posegen token EMAIL`).")


def get_db() -> Iterator[Session]:
    """One session per request, closed when the response is done (domain calls commit)."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]


# Methods that change nothing: a cookie alone may make them, since a cross-site page can cause
# them but never read their answers.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The token's user, read fresh from the database so a deleted user is locked out at once.

    A bearer token wins; without one, the web app's session cookie is accepted, and then every
    request that changes something must carry the session's CSRF token in `X-CSRF-Token`.
    """
    if credentials is None:
        user_id = _cookie_user_id(request, session)
    else:
        user_id, _role = decode_token(credentials.credentials)
    user = get_user(session, user_id)
    # End the read transaction here, so the request holds no pooled connection while it waits
    # for a worker thread: each sync dependency and threadpool call gets a thread of its own, and
    # under a burst (measured: 200 changes at once) requests parked between calls held every
    # connection while the threads that could free them waited for one — pool timeouts, 500s.
    session.commit()
    if user is None:
        raise Unauthorized("Invalid token")
    return user


def _cookie_user_id(request: Request, session: Session) -> uuid.UUID:
    secret = request.cookies.get(SESSION_COOKIE)
    web_session = find_session(session, secret) if secret else None
    if web_session is None:
        raise Unauthorized("Send a bearer token: Authorization: Bearer <token>.")
    if request.method not in _SAFE_METHODS and not csrf_matches(
        web_session, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("This request needs the page's CSRF token: reload the page and try again.")
    return web_session.user_id


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> User:
    """Roles come from the database, not the token, so a demotion takes effect immediately."""
    if user.role != Role.ADMIN:
        raise Forbidden("This needs an administrator.")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def parse_id(value: str, not_found: str) -> uuid.UUID:
    """A path id that is not a UUID names nothing, so it is a 404 like any unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(not_found) from None
