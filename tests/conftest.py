"""Shared fixtures: real services (PostgreSQL, S3 via moto, Prefect, fake FLUX), one per session.

The environment is set here, at import time, before posegen or prefect read any setting:
every test session gets its own POSEGEN_HOME; the segmentation model and numba cache are shared
with the project's `.posegen/` so they are fetched and compiled once per machine.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_STATE = ROOT / ".posegen"
_HOME = Path(tempfile.mkdtemp(prefix="posegen-test-"))

os.environ["POSEGEN_HOME"] = str(_HOME)
os.environ.setdefault("REMBG_HOME", str(_STATE / "models"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(_STATE / "numba-cache"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["POSEGEN_RETRY_BACKOFF_SECONDS"] = "0.2"
os.environ["POSEGEN_FLUX_POLL_INTERVAL"] = "0.05"
os.environ["POSEGEN_JWT_SECRET"] = "test-secret-" + uuid.uuid4().hex
for _name in ("POSEGEN_DATABASE_URL", "POSEGEN_STORAGE_URL", "POSEGEN_FLUX_API_KEY"):
    os.environ.pop(_name, None)

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.prefect_server", "tests.fake_bfl"]

PG_ADMIN_URL = os.environ.get(
    "POSEGEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reset_caches() -> None:
    from posegen.config import reset_settings
    from posegen.db.session import reset_engines
    from posegen.storage import reset_storage

    reset_settings()
    reset_engines()
    reset_storage()


@pytest.fixture(scope="session")
def posegen_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def sqlite_url(posegen_home: Path) -> str:
    """The session's SQLite app database, migrated."""
    from posegen.db.migrate import upgrade

    url = f"sqlite:///{posegen_home / 'posegen.db'}"
    upgrade(url)
    return url


def ci_requires_services(environ: Mapping[str, str] = os.environ) -> bool:
    """Any truthy CI (`true`, `1`, `yes`, `on`, any case): CI services go, or the run fails.

    CI systems set it differently (GitHub `true`, GitLab `true`, others `1`); a CI run that
    quietly skipped every database test would report green on nothing.
    """
    return environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on", "y"}


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database on the local server, dropped afterwards.

    Under CI (any truthy `CI`) a missing server is a failure, never a skip.
    """
    from sqlalchemy import create_engine, text

    from posegen.db.migrate import upgrade
    from posegen.db.session import get_engine

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if ci_requires_services():
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated; dropped at the end."""
    with fresh_pg_database("posegen_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def app_env(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Point posegen at the session's SQLite database and a per-test local storage folder."""
    env = {"POSEGEN_DATABASE_URL": sqlite_url, "POSEGEN_STORAGE_URL": str(tmp_path / "storage")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_caches()
    yield env
    monkeypatch.undo()
    _reset_caches()


@pytest.fixture(scope="session")
def rembg_warm() -> None:
    """Compile rembg's numba code into the shared cache before a subprocess needs it.

    A runner's flow-run process would otherwise compile it inside a test's time budget.
    """
    from posegen.imaging.segmentation import get_session

    get_session()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server per test session (it takes ~7 s to start)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        from posegen.orchestration import ensure_limits_sync

        ensure_limits_sync()
        yield url
        os.environ.pop("PREFECT_API_URL", None)


def make_user(
    url: str, *, credits: int = 100, unlimited: bool = False, admin: bool = False
) -> uuid.UUID:
    """Create a user with an opening grant in the ledger (balance = sum of ledger)."""
    from posegen.db.session import session_scope
    from posegen.domain.users import create_user

    with session_scope(url) as session:
        user = create_user(
            session,
            f"user-{uuid.uuid4().hex[:8]}@example.com",
            opening_credits=credits,
            unlimited=unlimited,
            admin=admin,
        )
        return user.id
