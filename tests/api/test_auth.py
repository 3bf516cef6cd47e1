"""Authentication and the error body shape every failure shares."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.api.deps import AdminUser
from posegen.auth import create_token
from tests.api.conftest import BASE, Account


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(user_id: uuid.UUID) -> dict[str, object]:
    return {"sub": str(user_id), "role": "USER", "exp": datetime.now(UTC) + timedelta(hours=1)}


def test_me_returns_the_token_owner(
    client: TestClient, new_account: Callable[..., Account]
) -> None:
    account = new_account(credits=42, unlimited=True)

    response = client.get(f"{BASE}/me", headers=account.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(account.id)
    assert body["email"].endswith("@example.com")
    assert (body["role"], body["credits"], body["enterpriseUnlimited"]) == ("USER", 42, True)


def test_missing_token_is_401_with_bearer_challenge(client: TestClient) -> None:
    response = client.get(f"{BASE}/me")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "Unauthorized"
    assert response.json()["message"]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "token-without-scheme"],
)
def test_malformed_authorization_is_401(client: TestClient, authorization: str) -> None:
    response = client.get(f"{BASE}/me", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_token_signed_with_another_key_is_401(client: TestClient, account: Account) -> None:
    forged = jwt.encode(_claims(account.id), "not-our-secret-" * 4, algorithm="HS256")

    response = client.get(f"{BASE}/me", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.json()["message"] == "Invalid token"


def test_expired_token_is_401(client: TestClient, account: Account) -> None:
    expired = create_token(account.id, "USER", days=-1)

    response = client.get(f"{BASE}/me", headers={"Authorization": f"Bearer {expired}"})

    assert response.status_code == 401
    assert response.json()["message"] == "Token expired"


def test_unsigned_alg_none_token_is_401(client: TestClient, account: Account) -> None:
    claims = _claims(account.id) | {"exp": int(datetime.now(UTC).timestamp()) + 3600}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."

    response = client.get(f"{BASE}/me", headers={"Authorization": f"Bearer {unsigned}"})

    assert response.status_code == 401


def test_token_of_a_user_that_no_longer_exists_is_401(client: TestClient) -> None:
    token = create_token(uuid.uuid4(), "USER")

    response = client.get(f"{BASE}/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


def test_admin_routes_take_the_role_from_the_database(
    app_env: dict[str, str], new_account: Callable[..., Account]
) -> None:
    app = create_app()

    @app.get("/admin-probe")
    def admin_probe(admin: AdminUser) -> dict[str, str]:
        return {"id": str(admin.id)}

    user, admin = new_account(), new_account(admin=True)
    # A USER whose token claims ADMIN is still a USER.
    claimed = {"Authorization": f"Bearer {create_token(user.id, 'ADMIN')}"}
    with TestClient(app) as client:
        assert client.get("/admin-probe", headers=claimed).status_code == 403
        assert client.get("/admin-probe", headers=admin.headers).json() == {"id": str(admin.id)}


def test_unknown_route_and_wrong_method_use_the_error_body(client: TestClient) -> None:
    missing = client.get(f"{BASE}/no-such-thing")
    wrong_method = client.delete(f"{BASE}/me")

    assert missing.status_code == 404
    assert missing.json() == {"error": "NotFound", "message": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "MethodNotAllowed"


def test_unexpected_errors_are_500_without_internals(app_env: dict[str, str]) -> None:
    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret connection string postgres://u:p@db")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.json() == {
        "error": "InternalError",
        "message": "Something went wrong on our side.",
    }


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert f"{BASE}/poses/{{pose_id}}/background" in paths
