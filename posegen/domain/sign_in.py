"""Web sign-in: one-time links that become browser sessions, and the sessions' CSRF tokens.

The platform hands out JWTs; a browser should not carry one in page JavaScript or keep it in
its address bar. So a link holds a random code that works once and briefly, and redeeming it
starts a session whose secret lives only in an HttpOnly cookie. Only hashes of codes and
secrets are stored: a database read does not sign anyone in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from posegen.config import get_settings
from posegen.db.models import LoginLink, User, WebSession, as_utc, utcnow
from posegen.errors import Unauthorized

SESSION_COOKIE = "posegen_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/app/sign-in"
# One message for every refused link: a wrong, used or expired code look alike to a visitor.
LINK_REFUSED = "This sign-in link is not valid any more. Ask for a new one."


@dataclass(frozen=True)
class IssuedLink:
    """`path` is the link on any host; `url` puts it on the API's public URL."""

    path: str
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class StartedSession:
    """What the browser gets once: the cookie's secret and when it stops working."""

    user_id: uuid.UUID
    secret: str
    expires_at: datetime


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_login_link(session: Session, user: User, *, minutes: int | None = None) -> IssuedLink:
    """A one-time sign-in URL for the user (absolute, on the API's public URL)."""
    settings = get_settings()
    code = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(minutes=minutes or settings.web_login_link_minutes)
    session.add(LoginLink(user_id=user.id, code_hash=_digest(code), expires_at=expires_at))
    session.commit()
    path = f"{LOGIN_PATH}/{code}"
    return IssuedLink(path, f"{settings.public_url}{path}", expires_at)


def redeem_login_link(session: Session, code: str) -> StartedSession:
    """Use a link's code once and start a session; Unauthorized for anything else.

    The conditional UPDATE is the "once": of two clicks racing, exactly one changes the row.
    """
    now = utcnow()
    used = session.execute(
        update(LoginLink)
        .where(
            LoginLink.code_hash == _digest(code),
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(LoginLink.user_id)
    ).scalar_one_or_none()
    if used is None or session.get(User, used) is None:
        session.rollback()
        raise Unauthorized(LINK_REFUSED)
    secret = secrets.token_urlsafe(32)
    expires_at = now + timedelta(days=get_settings().web_session_days)
    session.add(
        WebSession(
            user_id=used,
            secret_hash=_digest(secret),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=expires_at,
        )
    )
    session.commit()
    return StartedSession(user_id=used, secret=secret, expires_at=expires_at)


def find_session(session: Session, secret: str) -> WebSession | None:
    """The live session a cookie's secret names, or None (unknown, expired or signed out)."""
    found = session.scalar(select(WebSession).where(WebSession.secret_hash == _digest(secret)))
    if found is None or found.revoked_at is not None or as_utc(found.expires_at) <= utcnow():
        return None
    return found


def end_session(session: Session, web_session: WebSession) -> None:
    session.execute(
        update(WebSession).where(WebSession.id == web_session.id).values(revoked_at=utcnow())
    )
    session.commit()


def csrf_matches(web_session: WebSession, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(web_session.csrf_token, token)
