"""Each background change's outcome is recorded once, where it ends: the flow's completion,
the refund of a failure (however many parties try it), or the API's abort of a run it could
not submit. The alerts and /metrics count these rows. On SQLite (the embedded default) and
PostgreSQL: the insert that keeps the first outcome is dialect-specific."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from posegen.db.models import User
from posegen.db.operations import BackgroundChangeOutcome
from posegen.db.session import session_scope
from posegen.domain.background import (
    BackgroundChange,
    abort_change,
    complete_change,
    fail_change,
    start_change,
)
from posegen.domain.poses import import_generation
from posegen.storage import get_storage
from tests.api.conftest import png_bytes
from tests.conftest import _reset_caches, make_user

SOLID = BackgroundChange.model_validate(
    {"backgroundMode": "solid_color", "backgroundColor": "#112233"}
)


@pytest.fixture
def pose(any_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:  # type: ignore[type-arg]
    monkeypatch.setenv("POSEGEN_DATABASE_URL", any_db_url)
    monkeypatch.setenv("POSEGEN_STORAGE_URL", str(tmp_path / "storage"))
    _reset_caches()
    user_id = make_user(any_db_url, credits=100)
    with session_scope() as session:
        generation = import_generation(session, get_storage(), user_id, [png_bytes()])
        yield user_id, generation.poses[0].id, generation.poses[0].image_key
    monkeypatch.undo()
    _reset_caches()


def _outcomes(request_id: uuid.UUID) -> list[tuple[str, float]]:
    with session_scope() as session:
        rows = session.scalars(
            select(BackgroundChangeOutcome).where(BackgroundChangeOutcome.request_id == request_id)
        ).all()
        return [(row.outcome, row.duration_seconds) for row in rows]


def _start(user_id: uuid.UUID, pose_id: uuid.UUID) -> tuple[uuid.UUID, object]:
    request_id = uuid.uuid4()
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        ticket = start_change(session, user, pose_id, request_id, SOLID)
    return request_id, ticket


def test_a_failure_refunded_by_several_parties_counts_once(pose: tuple) -> None:  # type: ignore[type-arg]
    user_id, pose_id, _ = pose
    request_id, _ = _start(user_id, pose_id)
    assert _outcomes(request_id) == []  # running: not an outcome yet
    for _ in range(3):  # the hook, a re-run and the reconciler
        with session_scope() as session:
            fail_change(session, pose_id, request_id, "failed")
    ((outcome, duration),) = _outcomes(request_id)
    assert outcome == "failed"
    assert 0 <= duration < 60


def test_a_completed_change_keeps_its_outcome_when_a_late_hook_fails_it(pose: tuple) -> None:  # type: ignore[type-arg]
    user_id, pose_id, image_key = pose
    request_id, _ = _start(user_id, pose_id)
    with session_scope() as session:
        complete_change(
            session,
            pose_id,
            request_id,
            SOLID,
            image_key=image_key,
            mask_key=image_key,
            background_key=image_key,
        )
    with session_scope() as session:
        refund = fail_change(session, pose_id, request_id, "late failure")
    assert refund is not None and refund.created  # the user is still refunded
    assert [outcome for outcome, _ in _outcomes(request_id)] == ["completed"]


def test_an_aborted_submission_counts_as_failed(pose: tuple) -> None:  # type: ignore[type-arg]
    user_id, pose_id, _ = pose
    request_id, ticket = _start(user_id, pose_id)
    with session_scope() as session:
        abort_change(session, ticket)  # type: ignore[arg-type]
    assert [outcome for outcome, _ in _outcomes(request_id)] == ["failed"]


def test_the_windowed_counts_see_recent_changes_only(pose: tuple) -> None:  # type: ignore[type-arg]
    """The rates' windows compare stored times with aware UTC ones: right on both databases."""
    from datetime import UTC, datetime, timedelta

    from posegen.alerts import ledger_counts
    from posegen.domain.outcomes import Outcome, outcome_counts

    user_id, pose_id, _ = pose
    request_id, _ = _start(user_id, pose_id)
    with session_scope() as session:
        fail_change(session, pose_id, request_id, "failed")
    now = datetime.now(UTC)
    with session_scope() as session:
        recent = outcome_counts(session, since=now - timedelta(minutes=15))
        later = outcome_counts(session, since=now + timedelta(minutes=1))
        charges, refunds = ledger_counts(session, since=now - timedelta(minutes=15))
        assert ledger_counts(session, since=now + timedelta(minutes=1)) == (0, 0)
    assert recent[Outcome.FAILED] >= 1
    assert later == {Outcome.COMPLETED: 0, Outcome.FAILED: 0}
    assert charges >= 1 and refunds >= 1
