"""Per-user rate limits on the trigger endpoints: the token bucket in the database, and the 429
the API answers (with Retry-After, before anything is charged)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.api.rate_limit import Bucket, check_rate
from posegen.config import reset_settings
from posegen.db.session import get_sessionmaker
from posegen.errors import RateLimited
from tests.api.conftest import BASE, Account, Generated, balance, ledger, pose_status

SOLID = {"backgroundMode": "solid_color", "backgroundColor": "#ff8800"}
NOW = 1_800_000_000.0


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set POSEGEN_RATE_LIMIT_* settings for one test."""

    def set_limits(**per_minute: int | bool) -> None:
        for name, value in per_minute.items():
            monkeypatch.setenv(f"POSEGEN_RATE_LIMIT_{name.upper()}", str(value).lower())
        reset_settings()

    yield set_limits
    reset_settings()


def _take(url: str, user_id: uuid.UUID, bucket: Bucket, now: float) -> int | None:
    """None when the request is allowed, else the Retry-After seconds."""
    with get_sessionmaker(url)() as session:
        try:
            check_rate(session, user_id, bucket, now=now)
        except RateLimited as refused:
            return refused.retry_after
    return None


# -- the bucket ----------------------------------------------------------------------------------


def test_a_burst_of_the_limit_then_one_request_per_interval(
    any_db_url: str, limits: Callable[..., None]
) -> None:
    limits(background_per_minute=20)  # one token every 3 s
    user = uuid.uuid4()

    burst = [_take(any_db_url, user, Bucket.BACKGROUND, NOW) for _ in range(21)]

    assert burst[:20] == [None] * 20
    assert burst[20] == 3
    assert _take(any_db_url, user, Bucket.BACKGROUND, NOW + 2.9) == 1
    assert _take(any_db_url, user, Bucket.BACKGROUND, NOW + 3.0) is None
    assert _take(any_db_url, user, Bucket.BACKGROUND, NOW + 3.1) == 3
    # A minute of quiet refills the whole bucket.
    refilled = [_take(any_db_url, user, Bucket.BACKGROUND, NOW + 70) for _ in range(21)]
    assert refilled.count(None) == 20


@pytest.mark.parametrize("per_minute", [7, 11, 41, 97])
def test_the_whole_burst_is_allowed_whatever_the_limit(
    sqlite_url: str, limits: Callable[..., None], per_minute: int
) -> None:
    """60/N is rarely exact in floating point; the Nth request of a burst must still pass."""
    limits(background_per_minute=per_minute)
    user = uuid.uuid4()

    answers = [
        _take(sqlite_url, user, Bucket.BACKGROUND, NOW + 0.123) for _ in range(per_minute + 1)
    ]

    assert answers.count(None) == per_minute


def test_buckets_are_per_user_and_per_kind(any_db_url: str, limits: Callable[..., None]) -> None:
    limits(background_per_minute=1, uploads_per_minute=1)
    user, other = uuid.uuid4(), uuid.uuid4()

    assert _take(any_db_url, user, Bucket.BACKGROUND, NOW) is None
    assert _take(any_db_url, user, Bucket.BACKGROUND, NOW) == 60
    assert _take(any_db_url, user, Bucket.UPLOADS, NOW) is None
    assert _take(any_db_url, other, Bucket.BACKGROUND, NOW) is None


def test_zero_or_disabled_means_unlimited(any_db_url: str, limits: Callable[..., None]) -> None:
    user = uuid.uuid4()
    limits(requests_per_minute=0)
    assert all(_take(any_db_url, user, Bucket.REQUESTS, NOW) is None for _ in range(30))

    limits(requests_per_minute=1, enabled=False)
    assert all(_take(any_db_url, user, Bucket.REQUESTS, NOW) is None for _ in range(30))


def test_concurrent_requests_never_take_more_than_the_bucket_holds(
    any_db_url: str, limits: Callable[..., None]
) -> None:
    """Many connections at the same instant (as several API processes would be): exactly the
    limit gets through, because the check-and-take is one conditional statement."""
    limits(exports_per_minute=10)
    user = uuid.uuid4()

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: _take(any_db_url, user, Bucket.EXPORTS, NOW), range(40)))

    assert answers.count(None) == 10


# -- the API -------------------------------------------------------------------------------------

# Each trigger endpoint, with a request that costs nothing (an unknown id, an empty body):
# the limit counts every request that reaches it, accepted or not.
TRIGGERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "background": ("POST", f"/poses/{uuid.uuid4()}/background", {"json": SOLID}),
    "exports": ("POST", f"/generations/{uuid.uuid4()}/exports", {"json": {"formats": ["tiktok"]}}),
    "regenerate_export": ("POST", f"/poses/{uuid.uuid4()}/regenerate-export", {"json": {}}),
    "requests": ("POST", "/requests", {"json": {}}),
    "uploads": ("POST", "/uploads", {"files": {"image": ("a.png", b"x", "image/png")}}),
}


def test_every_trigger_endpoint_answers_429_with_retry_after(
    client: TestClient, new_account: Callable[..., Account], limits: Callable[..., None]
) -> None:
    limits(**{f"{name}_per_minute": 1 for name in TRIGGERS})
    user, other = new_account(), new_account()

    for name, (method, path, kwargs) in TRIGGERS.items():
        first = client.request(method, f"{BASE}{path}", headers=user.headers, **kwargs)
        second = client.request(method, f"{BASE}{path}", headers=user.headers, **kwargs)

        assert first.status_code != 429, name
        assert second.status_code == 429, name
        body = second.json()
        assert set(body) == {"error", "message", "retryAfter"}
        assert body["error"] == "RateLimited"
        assert "at most 1 a minute" in body["message"]
        assert 55 <= body["retryAfter"] <= 60
        assert second.headers["Retry-After"] == str(body["retryAfter"])
    # Another user's buckets are their own.
    method, path, kwargs = TRIGGERS["background"]
    assert (
        client.request(method, f"{BASE}{path}", headers=other.headers, **kwargs).status_code == 404
    )


def test_a_rate_limited_background_change_charges_nothing(
    client: TestClient,
    db_url: str,
    account: Account,
    new_generation: Callable[[Account], Generated],
    background_deployment: str,
    limits: Callable[..., None],
) -> None:
    limits(background_per_minute=1)
    first, second = new_generation(account), new_generation(account)

    accepted = client.post(
        f"{BASE}/poses/{first.pose_id}/background", json=SOLID, headers=account.headers
    )
    refused = client.post(
        f"{BASE}/poses/{second.pose_id}/background", json=SOLID, headers=account.headers
    )

    assert accepted.status_code == 202, accepted.text
    assert refused.status_code == 429
    assert balance(db_url, account.id) == 90
    assert ledger(db_url, account.id) == [(-10, "background_change")]
    assert pose_status(db_url, second.pose_id) == "ready"


def test_unauthenticated_requests_are_refused_before_any_bucket(
    client: TestClient, limits: Callable[..., None]
) -> None:
    limits(uploads_per_minute=1)

    answers = [client.post(f"{BASE}/uploads").status_code for _ in range(3)]

    assert answers == [401, 401, 401]
