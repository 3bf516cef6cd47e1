"""Pose-request fixtures: the API fixtures of tests/api, admins, requests, library poses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from posegen.db.migrate import upgrade
from posegen.db.session import get_engine
from tests.api import conftest as api_fixtures
from tests.api.conftest import BASE, Account
from tests.conftest import PG_ADMIN_URL

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
    """POST /requests as `owner` (default: the `account` user) and return the 201 body."""

    def make(name: str = "Hand on hip", owner: Account | None = None, **fields: Any) -> dict:
        owner = owner or account
        response = client.post(
            f"{BASE}/requests", json={"poseName": name, **fields}, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        return response.json()

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
    """An admin action (approve, reject, start, complete) on a request; returns the response."""
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
    name = f"posegen_stats_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    get_engine(url).dispose()
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()
