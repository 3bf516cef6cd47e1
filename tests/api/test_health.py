"""GET /health: database, storage and Prefect reachability and the model file, no authentication."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import BASE

HEALTH = f"{BASE}/health"


def test_all_dependencies_up_is_200(client: TestClient, prefect_api: str) -> None:
    response = client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": {"ok": True},
        "storage": {"ok": True},
        "prefect": {"ok": True},
        "model": {"ok": True},
    }


def test_prefect_down_is_503_degraded_with_the_database_ok(
    client: TestClient, prefect_unreachable: None
) -> None:
    response = client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == {"ok": True}
    assert body["storage"] == {"ok": True}
    assert body["prefect"] == {"ok": False, "error": "ConnectError"}


def test_database_down_is_503_without_details(
    client: TestClient,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    from posegen.config import reset_settings
    from posegen.db.session import reset_engines

    # A directory cannot be opened as a SQLite database file.
    monkeypatch.setenv("POSEGEN_DATABASE_URL", f"sqlite:///{tmp_path}")
    reset_settings()
    reset_engines()

    response = client.get(HEALTH)

    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "OperationalError"}
    assert str(tmp_path) not in response.text


def test_missing_model_file_is_503(
    client: TestClient, prefect_api: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from posegen.config import reset_settings

    monkeypatch.setenv("REMBG_HOME", str(tmp_path))
    reset_settings()

    response = client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert body["model"] == {"ok": False, "error": "ModelMissing"}
    assert body["database"] == body["storage"] == body["prefect"] == {"ok": True}
