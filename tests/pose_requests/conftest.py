"""Pose-request fixtures: the API fixtures of tests/api, admins, requests, library poses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.db.migrate import upgrade
from tests.api import conftest as api_fixtures
from tests.api.conftest import BASE, Account
from tests.conftest import fresh_pg_database

# The API fixtures, shared with tests/api (a conftest only sees its own directory's fixtures).
client = api_fixtures.client
db_url = api_fixtures.db_url
new_account = api_fixtures.new_account
account = api_fixtures.account
prefect_unreachable = api_fixtures.prefect_unreachable

MakeRequest = Callable[..., dict[str, Any]]


@pytest.fixture
def admin(new_account: Callable[..., Account]) -> Account:
    return new_account(admin=True)


@pytest.fixture
def make_request(client: TestClient, account: Account) -> MakeRequest:
    """POST /requests as `owner` (default: the `account` user); returns the 201 body's request."""

    def make(name: str = "Hand on hip", owner: Account | None = None, **fields: Any) -> dict:
        owner = owner or account
        response = client.post(
            f"{BASE}/requests", json={"poseName": name, **fields}, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        return response.json()["request"]

    return make


@pytest.fixture
def library_pose(client: TestClient, admin: Account) -> str:
    """The id of a library pose an admin can complete requests with."""
    response = client.post(
        f"{BASE}/admin/library", json={"name": "Hand on hip"}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def move(client: TestClient, admin: Account, request_id: str, action: str, **body: Any) -> Any:
    """An admin action (approve, reject, mark-in-progress, mark-completed) on a request."""
    return client.post(
        f"{BASE}/admin/pose-requests/{request_id}/{action}", json=body, headers=admin.headers
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of its own (statistics must not see other tests' rows)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stats.db'}"
        upgrade(url)
        yield url
        return
    with fresh_pg_database("posegen_stats") as url:
        yield url
