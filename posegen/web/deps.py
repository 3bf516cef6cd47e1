"""Who is looking at a page: the browser session behind the cookie, or a sign-in page (and
for the admin desk, a 403 page unless the viewer is an administrator).

Pages never take bearer tokens: a browser signs in through a one-time link and then carries
only the HttpOnly session cookie. API routes accept the same cookie (posegen/api/deps.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from posegen.api.deps import SessionDep
from posegen.db.models import Role, User, WebSession
from posegen.domain.sign_in import SESSION_COOKIE, find_session
from posegen.domain.users import get_user
from posegen.errors import Forbidden, Unauthorized


class SignInRequired(Unauthorized):
    """No live session: the page answers 401 with the sign-in page instead of the content."""


@dataclass(frozen=True)
class Viewer:
    user: User
    session: WebSession

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    secret = request.cookies.get(SESSION_COOKIE)
    web_session = find_session(session, secret) if secret else None
    user = get_user(session, web_session.user_id) if web_session is not None else None
    if web_session is None or user is None:
        raise SignInRequired("Sign in to see this page.")
    return Viewer(user, web_session)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def get_admin_viewer(viewer: ViewerDep) -> Viewer:
    if viewer.user.role != Role.ADMIN:
        raise Forbidden("Only administrators can see this page.")
    return viewer


AdminViewerDep = Annotated[Viewer, Depends(get_admin_viewer)]
