"""Security test fixtures: the API test fixtures (app, users with tokens, generations), shared.

Imported rather than copied, so an attacker here is built exactly like a user in tests/api.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from posegen.config import reset_settings
from tests.api.conftest import (
    account,
    background_deployment,
    client,
    db_url,
    generated,
    new_account,
    new_generation,
    prefect_unreachable,
)

__all__ = [
    "account",
    "background_deployment",
    "client",
    "db_url",
    "generated",
    "new_account",
    "new_generation",
    "no_rate_limits",
    "prefect_unreachable",
]


@pytest.fixture
def no_rate_limits(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that send many hostile requests as one user: each must reach its check, not
    the 429 (the limits are tested in tests/api/test_rate_limit.py)."""
    monkeypatch.setenv("POSEGEN_RATE_LIMIT_ENABLED", "false")
    reset_settings()
    yield
    reset_settings()
