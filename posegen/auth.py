"""Bearer tokens: HS256 JWTs signed with POSEGEN_JWT_SECRET, carrying the user id and role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt

from posegen.config import get_settings
from posegen.errors import Unauthorized

ALGORITHM = "HS256"


def create_token(user_id: uuid.UUID, role: str, *, days: int | None = None) -> str:
    settings = get_settings()
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "role": role,
        "iat": now,
        "exp": now + timedelta(days=days if days is not None else settings.jwt_days),
    }
    return jwt.encode(claims, settings.jwt_key(), algorithm=ALGORITHM)


def decode_token(token: str) -> tuple[uuid.UUID, str]:
    """The token's user id and role; Unauthorized for anything not signed by us and current.

    Only HS256 is accepted, which also refuses `alg: none` and key-confusion tricks. Any
    PyJWT error is a refusal, including a server key PyJWT will not use (an empty
    POSEGEN_JWT_SECRET): the request is refused with 401, not answered with a 500.
    """
    try:
        claims = jwt.decode(
            token,
            get_settings().jwt_key(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
        return uuid.UUID(str(claims["sub"])), str(claims.get("role", "USER"))
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token expired") from None
    except (jwt.PyJWTError, ValueError):
        raise Unauthorized("Invalid token") from None
