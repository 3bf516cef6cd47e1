"""The OpenAPI document says what the API answers (400 not 422, 401 on token routes, one error
body), and every 4xx the API sends has that body: `{error, message, ...}`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.api.app import create_app
from posegen.config import reset_settings
from tests.api.conftest import BASE, Account
from tests.security.routes import inventory, sample_path_values

ROUTES = [route for route in inventory(create_app()) if route.is_api]
_ERROR_REFS = {"#/components/schemas/Error", "#/components/schemas/ValidationProblem"}


@pytest.fixture
def no_rate_limits(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSEGEN_RATE_LIMIT_ENABLED", "false")
    reset_settings()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_no_operation_documents_422_and_validation_is_400(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert [f"{m} {p}" for m, p, op in operations if "422" in op["responses"]] == []
    assert "HTTPValidationError" not in document["components"]["schemas"]
    background = document["paths"][f"{BASE}/poses/{{pose_id}}/background"]["post"]
    schema = background["responses"]["400"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ValidationProblem"}


def test_every_route_that_needs_a_token_documents_401(document: dict[str, Any]) -> None:
    needs_token = {(r.method, re.sub(r":\w+}", "}", r.path)) for r in ROUTES if r.needs_user}
    documented = {
        (method, path) for method, path, op in _operations(document) if "401" in op["responses"]
    }
    assert len(needs_token) > 30
    assert needs_token - documented == set()
    me = document["paths"][f"{BASE}/me"]["get"]
    assert me["security"] == [{"HTTPBearer": []}]


def test_every_documented_error_response_has_the_error_body(document: dict[str, Any]) -> None:
    wrong = {}
    for method, path, operation in _operations(document):
        for code, response in operation["responses"].items():
            if code[0] != "4":
                continue
            ref = response.get("content", {}).get("application/json", {}).get("schema", {})
            if ref.get("$ref") not in _ERROR_REFS:
                wrong[f"{code} {method} {path}"] = ref
    assert wrong == {}
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]


def test_every_4xx_the_api_sends_has_error_and_message(
    client: TestClient, account: Account, no_rate_limits: None, prefect_unreachable: None
) -> None:
    """Every route, called wrongly: no token, a user on admin routes, ids naming nothing,
    bodies that are not JSON; plus unknown paths and wrong methods. (Prefect unreachable: what
    would start a run or a stream answers at once.)"""
    values = sample_path_values()
    bodies: dict[str, tuple[int, Any]] = {}
    for route in ROUTES:
        url = route.url(values)
        answers = [client.request(route.method, url)]  # no token
        answers.append(
            client.request(
                route.method,
                url,
                content=b"{not json",
                headers={**account.headers, "Content-Type": "application/json"},
            )
        )
        for response in answers:
            if 400 <= response.status_code < 500:
                body = response.json()
                if not (
                    isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
                ):
                    bodies[f"{route.label} {response.status_code}"] = body
    for response in (
        client.get(f"{BASE}/no-such-thing", headers=account.headers),
        client.delete(f"{BASE}/me", headers=account.headers),
    ):
        assert response.status_code in (404, 405)
        assert set(response.json()) >= {"error", "message"}
    assert bodies == {}


def test_the_seed_routes_are_documented(document: dict[str, Any]) -> None:
    admin = f"{BASE}/admin/pose-requests"
    expected = {
        ("POST", f"{BASE}/requests"),
        ("GET", f"{BASE}/requests"),
        ("GET", admin),
        ("GET", f"{admin}/{{request_id}}"),
        ("POST", f"{admin}/{{request_id}}/approve"),
        ("POST", f"{admin}/{{request_id}}/reject"),
        ("POST", f"{admin}/{{request_id}}/mark-in-progress"),
        ("POST", f"{admin}/{{request_id}}/mark-completed"),
        ("PUT", f"{admin}/{{request_id}}/notes"),
        ("GET", f"{admin}/stats"),
        ("GET", f"{admin}/popular"),
    }
    documented = {(method, path) for method, path, _ in _operations(document)}
    assert expected - documented == set()
    listed = {p["name"] for p in document["paths"][admin]["get"]["parameters"]}
    assert {"page", "limit", "status", "categoryId", "userId"} <= listed
