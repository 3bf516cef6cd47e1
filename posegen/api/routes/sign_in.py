"""POST /sign-in-links: turn a bearer token into a one-time link that signs a browser in.

The platform that hands out JWTs calls this for its user and sends the browser to the URL;
the web app then keeps only an HttpOnly session cookie, never the token.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from posegen.api.deps import CurrentUser, SessionDep
from posegen.api.schemas import CamelResponse
from posegen.domain.sign_in import create_login_link

router = APIRouter(tags=["sign-in"])


class SignInLink(CamelResponse):
    url: str
    expires_at: datetime


@router.post("/sign-in-links", status_code=201, response_model=SignInLink)
def new_sign_in_link(user: CurrentUser, session: SessionDep) -> SignInLink:
    """A link for the caller that works once, for `POSEGEN_WEB_LOGIN_LINK_MINUTES` minutes."""
    link = create_login_link(session, user)
    return SignInLink(url=link.url, expires_at=link.expires_at)
