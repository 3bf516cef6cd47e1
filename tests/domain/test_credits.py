"""The credits ledger on SQLite and PostgreSQL: charge, refuse, refund once, stay consistent."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from posegen.db.models import CreditTransaction
from posegen.db.session import session_scope
from posegen.domain import credits
from posegen.errors import InsufficientCredits
from tests.conftest import make_user


def state(url: str, user_id: uuid.UUID) -> tuple[int, int, int]:
    """(balance, sum of ledger, number of ledger rows)."""
    with session_scope(url) as session:
        rows = session.scalar(select(func.count()).where(CreditTransaction.user_id == user_id))
        return credits.balance(session, user_id), credits.ledger_sum(session, user_id), rows or 0


def charge(url: str, user_id: uuid.UUID, key: str, amount: int = 10) -> credits.LedgerEntry:
    with session_scope(url) as session:
        return credits.charge_credits(
            session, user_id, amount, idempotency_key=key, reason="background_change"
        )


def test_charge_takes_credits_and_writes_one_ledger_row(any_db_url: str) -> None:
    user_id = make_user(any_db_url, credits=30)
    entry = charge(any_db_url, user_id, "k1")
    assert entry.created and entry.amount == -10 and entry.balance == 20
    assert state(any_db_url, user_id) == (20, 20, 2)


def test_same_idempotency_key_charges_once(any_db_url: str) -> None:
    user_id = make_user(any_db_url, credits=30)
    first = charge(any_db_url, user_id, "same")
    second = charge(any_db_url, user_id, "same")
    assert second.transaction_id == first.transaction_id and not second.created
    assert state(any_db_url, user_id) == (20, 20, 2)


def test_insufficient_credits_changes_nothing(any_db_url: str) -> None:
    user_id = make_user(any_db_url, credits=5)
    with pytest.raises(InsufficientCredits) as raised:
        charge(any_db_url, user_id, "k")
    assert raised.value.context == {"required": 10, "balance": 5}
    assert raised.value.status_code == 403
    assert state(any_db_url, user_id) == (5, 5, 1)


def test_zero_charge_for_unlimited_is_recorded(any_db_url: str) -> None:
    user_id = make_user(any_db_url, credits=0, unlimited=True)
    entry = charge(any_db_url, user_id, "free", amount=0)
    assert entry.amount == 0 and entry.balance == 0
    assert state(any_db_url, user_id) == (0, 0, 1)


def test_refund_happens_once(any_db_url: str) -> None:
    user_id = make_user(any_db_url, credits=30)
    charge(any_db_url, user_id, "job")
    with session_scope(any_db_url) as session:
        first = credits.refund_charge(session, "job")
        again = credits.refund_charge(session, "job")
    assert first is not None and first.created and first.amount == 10
    assert again is not None and not again.created
    assert state(any_db_url, user_id) == (30, 30, 3)


def test_refund_of_unknown_charge_is_nothing(any_db_url: str) -> None:
    with session_scope(any_db_url) as session:
        assert credits.refund_charge(session, f"never-{uuid.uuid4()}") is None


def _race(url: str, user_id: uuid.UUID, keys: list[str]) -> list[str]:
    barrier = threading.Barrier(len(keys))
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(key: str) -> None:
        barrier.wait()
        try:
            charge(url, user_id, key)
            result = "ok"
        except InsufficientCredits:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.postgres
def test_parallel_charges_never_overdraw_on_postgres(pg_url: str) -> None:
    """40 parallel charges against a balance that allows 25: exactly 25 succeed."""
    user_id = make_user(pg_url, credits=250)
    outcomes = _race(pg_url, user_id, [f"p-{i}" for i in range(40)])
    assert outcomes.count("ok") == 25 and outcomes.count("refused") == 15
    assert state(pg_url, user_id) == (0, 0, 26)


@pytest.mark.postgres
def test_parallel_duplicates_of_one_key_charge_once_on_postgres(pg_url: str) -> None:
    user_id = make_user(pg_url, credits=100)
    outcomes = _race(pg_url, user_id, ["dup"] * 20)
    assert outcomes.count("ok") == 20
    assert state(pg_url, user_id) == (90, 90, 2)
