"""Authentication: every route that needs a token refuses every kind of bad token the same way.

tests/api/test_auth.py shows each refusal on GET /me; here the same tokens (and a few more
forgeries) are swept across the authenticated routes of `app.routes`, because one route that
forgot `CurrentUser` would be an open door however well /me is guarded. Every route gets the
most telling forgeries; every forgery gets one route of each router module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.auth import create_token
from posegen.config import get_settings, reset_settings
from tests.api.conftest import Account
from tests.security.routes import Route, inventory, one_per_module, sample_path_values

ROUTES = inventory(create_app())
# Routes anyone may call: probes and documentation. Everything else must demand a token.
PUBLIC = frozenset(
    {
        "GET /openapi.json",
        "GET /docs",
        "GET /docs/oauth2-redirect",
        "GET /redoc",
        "GET /metrics",
        "GET /api/apps/pose-generator/health",
        # The web app's way in: the root redirects to it, sign-in explains and redeems links.
        "GET /",
        "GET /app/sign-in",
        "GET /app/sign-in/{code}",
    }
)
PROTECTED = [route for route in ROUTES if route.needs_user]
SAMPLE = one_per_module(PROTECTED)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_built(header: dict[str, object], claims: dict[str, object], key: bytes | None) -> str:
    """A JWT assembled by hand: PyJWT itself refuses to sign with `none` or an empty key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return f"{signing_input}."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(user_id: uuid.UUID, **extra: object) -> dict[str, object]:
    expires = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    return {"sub": str(user_id), "role": "USER", "exp": expires} | extra


# name → the Authorization header a client sends (None: no header), for a real user's id.
BAD_CREDENTIALS: dict[str, Callable[[Account], str | None]] = {
    "missing": lambda user: None,
    "bearer-without-token": lambda user: "Bearer",
    "bearer-blank": lambda user: "Bearer ",
    "two-segments": lambda user: "Bearer x.y",
    "basic-auth": lambda user: "Basic dXNlcjpwYXNz",
    "token-without-scheme": lambda user: user.token,
    "expired": lambda user: f"Bearer {create_token(user.id, 'USER', days=-1)}",
    "wrong-signature": lambda user: (
        f"Bearer {jwt.encode(_claims(user.id), 'not-our-secret-' * 4, algorithm='HS256')}"
    ),
    "tampered-payload": lambda user: _tampered(user),
    "alg-none": lambda user: f"Bearer {_hand_built({'alg': 'none'}, _claims(user.id), None)}",
    "alg-none-with-our-signature": lambda user: _alg_none_with_signature(user),
    "hs256-empty-key": lambda user: (
        f"Bearer {_hand_built({'alg': 'HS256', 'typ': 'JWT'}, _claims(user.id), b'')}"
    ),
    "hs512-with-our-key": lambda user: (
        f"Bearer {jwt.encode(_claims(user.id), get_settings().jwt_key(), algorithm='HS512')}"
    ),
    "no-expiry": lambda user: (
        f"Bearer {jwt.encode({'sub': str(user.id)}, get_settings().jwt_key(), algorithm='HS256')}"
    ),
    "subject-not-a-uuid": lambda user: (
        f"Bearer {jwt.encode(_claims(user.id) | {'sub': '1 OR 1=1'}, get_settings().jwt_key())}"
    ),
    "unknown-user": lambda user: f"Bearer {create_token(uuid.uuid4(), 'ADMIN')}",
}


def _tampered(user: Account) -> str:
    """Our own valid token with its payload swapped for one naming an admin role."""
    header, _payload, signature = user.token.split(".")
    payload = _b64(json.dumps(_claims(user.id, role="ADMIN", exp=9_999_999_999)).encode())
    return f"Bearer {header}.{payload}.{signature}"


def _alg_none_with_signature(user: Account) -> str:
    _header, payload, signature = user.token.split(".")
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"Bearer {none_header}.{payload}.{signature}"


def test_every_route_needs_a_token_unless_listed_as_public() -> None:
    """A new route must either take `CurrentUser`/`AdminUser` or be added to PUBLIC here."""
    open_routes = {f"{r.method} {r.path}" for r in ROUTES if not (r.needs_user or r.needs_session)}

    # Both ways: an unlisted open route fails, and so does a listed one that no longer exists.
    assert open_routes == PUBLIC
    assert len(PROTECTED) >= 30  # the sweep below is not vacuous


def test_every_admin_path_needs_an_administrator() -> None:
    unguarded = [r.label for r in ROUTES if "/admin/" in r.path and not r.needs_admin]

    assert unguarded == []


@pytest.mark.parametrize("credential", ["missing", "wrong-signature", "alg-none", "unknown-user"])
def test_every_protected_route_refuses_a_bad_token(
    client: TestClient, account: Account, credential: str
) -> None:
    _assert_refused_everywhere(client, account, credential, PROTECTED)


# The HS512 forgery uses our (HS256-sized) key on purpose; PyJWT warns about its length.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS))
def test_every_kind_of_bad_token_is_refused(
    client: TestClient, account: Account, credential: str
) -> None:
    assert len(SAMPLE) >= 9  # one route of each authenticated router
    _assert_refused_everywhere(client, account, credential, SAMPLE)


def _assert_refused_everywhere(
    client: TestClient, account: Account, credential: str, routes: list[Route]
) -> None:
    authorization = BAD_CREDENTIALS[credential](account)
    headers = {} if authorization is None else {"Authorization": authorization}
    values = sample_path_values()

    answers = {route.label: _call(client, route, values, headers) for route in routes}

    wrong = {
        label: (status, body, challenge)
        for label, (status, body, challenge) in answers.items()
        if status != 401
        or set(body) != {"error", "message"}
        or body["error"] != "Unauthorized"
        or challenge != "Bearer"
    }
    assert wrong == {}
    # One message per kind of failure, whatever the route: nothing about the route leaks.
    assert len({body["message"] for _status, body, _challenge in answers.values()}) == 1


def test_a_server_with_an_empty_jwt_secret_refuses_empty_key_tokens(
    client: TestClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misconfigured POSEGEN_JWT_SECRET="" must not make empty-key forgeries valid."""
    forged = _hand_built({"alg": "HS256", "typ": "JWT"}, _claims(account.id), b"")
    monkeypatch.setenv("POSEGEN_JWT_SECRET", "")
    reset_settings()

    response = client.get(
        "/api/apps/pose-generator/me", headers={"Authorization": f"Bearer {forged}"}
    )

    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": "Invalid token"}


def _call(
    client: TestClient, route: Route, values: dict[str, str], headers: dict[str, str]
) -> tuple[int, dict[str, object], str | None]:
    response = client.request(route.method, route.url(values), headers=headers)
    return response.status_code, response.json(), response.headers.get("www-authenticate")
