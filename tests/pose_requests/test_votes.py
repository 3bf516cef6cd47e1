"""Votes: one per user, idempotent, only on open requests, and `votesCount` = rows, also when
50 users vote at once on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from posegen.config import reset_settings
from posegen.db.community import PoseRequest, PoseRequestVote, RequestStatus
from posegen.db.models import User
from posegen.db.session import session_scope
from posegen.domain import pose_requests
from posegen.domain.pose_requests import AdminAction, PoseRequestCreate
from tests.conftest import make_user
from tests.pose_requests.conftest import BASE, Account, MakeRequest, move


def _vote_url(request_id: str) -> str:
    return f"{BASE}/requests/{request_id}/vote"


def _counts(url: str, request_id: uuid.UUID | str) -> tuple[int, int]:
    """(votes_count on the request, number of vote rows)."""
    rid = uuid.UUID(str(request_id))
    with session_scope(url) as session:
        counter = session.scalar(select(PoseRequest.votes_count).where(PoseRequest.id == rid))
        rows = session.scalar(select(func.count()).where(PoseRequestVote.request_id == rid))
        return counter or 0, rows or 0


def test_second_vote_changes_nothing(
    client: TestClient, account: Account, make_request: MakeRequest, db_url: str
) -> None:
    request_id = make_request()["id"]
    first = client.post(_vote_url(request_id), headers=account.headers)
    second = client.post(_vote_url(request_id), headers=account.headers)
    assert first.status_code == second.status_code == 200
    assert (
        first.json()
        == second.json()
        == {
            "requestId": request_id,
            "votesCount": 1,
            "hasVoted": True,
        }
    )
    assert _counts(db_url, request_id) == (1, 1)


def test_unvote_takes_the_vote_back_once(
    client: TestClient, account: Account, make_request: MakeRequest, db_url: str
) -> None:
    request_id = make_request()["id"]
    client.post(_vote_url(request_id), headers=account.headers)
    assert _counts(db_url, request_id) == (1, 1)

    first = client.delete(_vote_url(request_id), headers=account.headers)
    again = client.delete(_vote_url(request_id), headers=account.headers)
    assert (
        first.json()
        == again.json()
        == {
            "requestId": request_id,
            "votesCount": 0,
            "hasVoted": False,
        }
    )
    assert _counts(db_url, request_id) == (0, 0)


def test_any_seller_votes_on_a_pending_request_by_default(
    client: TestClient, new_account: Callable[..., Account], make_request: MakeRequest
) -> None:
    request_id = make_request()["id"]
    seller = new_account()
    voted = client.post(_vote_url(request_id), headers=seller.headers)
    assert (voted.status_code, voted.json()["votesCount"]) == (200, 1)
    seen = client.get(f"{BASE}/requests/{request_id}", headers=seller.headers).json()
    assert (seen["status"], seen["votesCount"], seen["hasVoted"]) == ("pending", 1, True)
    unvoted = client.delete(_vote_url(request_id), headers=seller.headers)
    assert unvoted.json()["votesCount"] == 0


def test_with_premoderation_pending_requests_of_others_are_invisible(
    client: TestClient,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSEGEN_POSE_REQUESTS_PREMODERATION", "true")
    reset_settings()
    request_id = make_request()["id"]
    stranger = new_account()
    assert client.post(_vote_url(request_id), headers=stranger.headers).status_code == 404
    assert client.get(f"{BASE}/requests/{request_id}", headers=stranger.headers).status_code == 404


def test_others_vote_once_approved_and_see_has_voted(
    client: TestClient,
    admin: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    request_id = make_request()["id"]
    move(client, admin, request_id, "approve")
    voter = new_account()
    assert client.post(_vote_url(request_id), headers=voter.headers).json()["votesCount"] == 1
    seen = client.get(f"{BASE}/requests/{request_id}", headers=voter.headers).json()
    assert (seen["votesCount"], seen["hasVoted"]) == (1, True)


@pytest.mark.parametrize(
    ("path", "status"),
    [(["reject"], "rejected"), (["approve", "mark-in-progress", "mark-completed"], "completed")],
)
def test_closed_requests_take_no_votes_and_keep_their_count(
    path: list[str],
    status: str,
    client: TestClient,
    admin: Account,
    account: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
    library_pose: str,
    db_url: str,
) -> None:
    request_id = make_request()["id"]
    client.post(_vote_url(request_id), headers=account.headers)
    bodies = {
        "reject": {"adminNotes": "duplicate"},
        "mark-completed": {"completedPoseId": library_pose},
    }
    for action in path:
        assert move(client, admin, request_id, action, **bodies.get(action, {})).status_code == 200

    for voter in (account, new_account()):
        refused = client.post(_vote_url(request_id), headers=voter.headers)
        assert refused.status_code == 409
        assert f"this request is {status}" in refused.json()["message"]
    unvote = client.delete(_vote_url(request_id), headers=account.headers)
    assert unvote.status_code == 409
    assert _counts(db_url, request_id) == (1, 1)


def test_deleting_own_pending_request_removes_its_votes(
    client: TestClient, account: Account, make_request: MakeRequest, db_url: str
) -> None:
    request_id = make_request()["id"]
    client.post(_vote_url(request_id), headers=account.headers)
    assert (
        client.delete(f"{BASE}/requests/{request_id}", headers=account.headers).status_code == 204
    )
    assert _counts(db_url, request_id) == (0, 0)


@pytest.mark.postgres
def test_fifty_concurrent_voters_keep_count_equal_to_rows(pg_url: str) -> None:
    owner = make_user(pg_url, credits=0)
    voters = [make_user(pg_url, credits=0) for _ in range(50)]
    with session_scope(pg_url) as session:
        user = session.get(User, owner)
        assert user is not None
        request_id = pose_requests.create_request(
            session, user, PoseRequestCreate(pose_name=f"Crowd {uuid.uuid4().hex[:6]}")
        ).id
        admin = session.get(User, make_user(pg_url, credits=0, admin=True))
        assert admin is not None
        # Approved: on the public board, so every user may vote.
        pose_requests.change_status(
            session, admin, request_id, RequestStatus.APPROVED, AdminAction()
        )

    def race(actions: list[tuple[uuid.UUID, Callable[..., object]]]) -> list[BaseException]:
        barrier = threading.Barrier(len(actions))
        errors: list[BaseException] = []

        def worker(user_id: uuid.UUID, action: Callable[..., object]) -> None:
            try:
                # Wait before taking a connection: 100 threads share a pool of 30.
                barrier.wait(timeout=30)
                with session_scope(pg_url) as session:
                    action(session, session.get(User, user_id), request_id)
            except BaseException as exc:  # collected: a thread's failure must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=a) for a in actions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return errors

    # Every voter votes twice at the same moment: 100 attempts, 50 votes.
    assert race([(v, pose_requests.vote) for v in voters for _ in range(2)]) == []
    assert _counts(pg_url, request_id) == (50, 50)

    # Half take their vote back while the other half vote again (no-ops).
    mixed = [(v, pose_requests.unvote) for v in voters[:25]]
    mixed += [(v, pose_requests.vote) for v in voters[25:]]
    assert race(mixed) == []
    assert _counts(pg_url, request_id) == (25, 25)
