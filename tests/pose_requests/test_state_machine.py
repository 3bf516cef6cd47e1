"""The admin lifecycle: every legal and illegal move, its history, notes, and its event."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.db.models import User
from posegen.db.session import session_scope
from posegen.domain import pose_requests
from posegen.domain.pose_requests import (
    TRANSITIONS,
    AdminAction,
    PoseRequestCreate,
    RequestStatus,
)
from posegen.errors import Conflict, NotFound
from tests.conftest import make_user
from tests.events import wait_for_events
from tests.pose_requests.conftest import BASE, Account, MakeRequest, move

ACTIONS = {
    "approve": RequestStatus.APPROVED,
    "reject": RequestStatus.REJECTED,
    "mark-in-progress": RequestStatus.IN_PROGRESS,
    "mark-completed": RequestStatus.COMPLETED,
}
# The legal path to each status, as admin actions from pending.
PATHS = {
    RequestStatus.PENDING: [],
    RequestStatus.APPROVED: ["approve"],
    RequestStatus.IN_PROGRESS: ["approve", "mark-in-progress"],
    RequestStatus.COMPLETED: ["approve", "mark-in-progress", "mark-completed"],
    RequestStatus.REJECTED: ["reject"],
}
CASES = [(status, action) for status in RequestStatus for action in ACTIONS]


def _body(action: str, library_pose: str) -> dict[str, Any]:
    """A body each action accepts, so only the transition itself can be refused."""
    if action == "reject":
        return {"adminNotes": "Too close to an existing pose"}
    if action == "mark-completed":
        return {"completedPoseId": library_pose}
    return {}


def _request_in(
    status: RequestStatus,
    client: TestClient,
    admin: Account,
    make_request: MakeRequest,
    library_pose: str,
) -> str:
    request_id = make_request()["id"]
    for action in PATHS[status]:
        response = move(client, admin, request_id, action, **_body(action, library_pose))
        assert response.status_code == 200, response.text
    return request_id


def _admin_view(client: TestClient, admin: Account, request_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/admin/pose-requests/{request_id}", headers=admin.headers)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(("status", "action"), CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_every_transition_is_allowed_exactly_when_the_table_says(
    status: RequestStatus,
    action: str,
    client: TestClient,
    admin: Account,
    make_request: MakeRequest,
    library_pose: str,
) -> None:
    request_id = _request_in(status, client, admin, make_request, library_pose)
    before = _admin_view(client, admin, request_id)

    response = move(client, admin, request_id, action, **_body(action, library_pose))

    target = ACTIONS[action]
    if target in TRANSITIONS[status]:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == target
        assert body["history"][-1]["fromStatus"] == status
        assert body["history"][-1]["toStatus"] == target
        assert len(body["history"]) == len(before["history"]) + 1
    else:
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["error"] == "Conflict"
        assert f"it is {status}" in body["message"] or f"already {status}" in body["message"]
        assert body["currentStatus"] == status
        after = _admin_view(client, admin, request_id)
        assert (after["status"], after["history"]) == (before["status"], before["history"])


def test_the_lifecycle_has_no_other_moves() -> None:
    assert {s: set(t) for s, t in TRANSITIONS.items()} == {
        "pending": {"approved", "rejected"},
        "approved": {"in_progress", "rejected"},
        "in_progress": {"completed"},
        "completed": set(),
        "rejected": set(),
    }


@pytest.mark.parametrize("body", [None, {}, {"adminNotes": "   "}])
def test_reject_needs_notes(
    body: dict[str, Any] | None, client: TestClient, admin: Account, make_request: MakeRequest
) -> None:
    request_id = make_request()["id"]
    response = client.post(
        f"{BASE}/admin/pose-requests/{request_id}/reject", json=body, headers=admin.headers
    )
    assert response.status_code == 400
    assert response.json()["field"] == "adminNotes"
    assert response.json()["message"].startswith("adminNotes:")
    assert _admin_view(client, admin, request_id)["status"] == "pending"


def test_reject_records_notes_in_request_and_history(
    client: TestClient, admin: Account, make_request: MakeRequest
) -> None:
    request_id = make_request()["id"]
    response = move(client, admin, request_id, "reject", adminNotes="  We have this as  #12 ")
    assert response.status_code == 200
    body = response.json()
    assert body["adminNotes"] == "We have this as #12"
    assert body["history"][0]["notes"] == "We have this as #12"
    assert body["history"][0]["adminId"] == str(admin.id)


def test_complete_needs_an_existing_library_pose(
    client: TestClient, admin: Account, make_request: MakeRequest, library_pose: str
) -> None:
    request_id = _request_in(RequestStatus.IN_PROGRESS, client, admin, make_request, library_pose)
    missing = move(client, admin, request_id, "mark-completed")
    unknown = move(
        client,
        admin,
        request_id,
        "mark-completed",
        completedPoseId="00000000-0000-4000-8000-000000000000",
    )
    assert (missing.status_code, missing.json()["field"]) == (400, "completedPoseId")
    assert (unknown.status_code, unknown.json()["field"]) == (400, "completedPoseId")
    assert "no pose with this id" in unknown.json()["message"]

    done = move(client, admin, request_id, "mark-completed", completedPoseId=library_pose)
    assert done.status_code == 200
    assert done.json()["completedPoseId"] == library_pose


def test_notes_can_be_edited_without_changing_status(
    client: TestClient, admin: Account, make_request: MakeRequest
) -> None:
    request_id = make_request()["id"]
    url = f"{BASE}/admin/pose-requests/{request_id}/notes"
    edited = client.put(url, json={"adminNotes": "Check licensing"}, headers=admin.headers)
    assert (edited.status_code, edited.json()["adminNotes"]) == (200, "Check licensing")
    assert (edited.json()["status"], edited.json()["history"]) == ("pending", [])
    cleared = client.put(url, json={"adminNotes": None}, headers=admin.headers)
    assert cleared.json()["adminNotes"] is None


def _rows_of(db_url: str, request_id: str) -> dict[str, int]:
    """How many rows of each table belong to the request."""
    from sqlalchemy import func, select

    from posegen.db.community import PoseRequest, PoseRequestStatusChange, PoseRequestVote

    rid = uuid.UUID(request_id)
    with session_scope(db_url) as session:
        return {
            table.__tablename__: session.scalar(
                select(func.count()).select_from(table).where(column == rid)
            )
            or 0
            for table, column in (
                (PoseRequest, PoseRequest.id),
                (PoseRequestVote, PoseRequestVote.request_id),
                (PoseRequestStatusChange, PoseRequestStatusChange.request_id),
            )
        }


def test_admin_delete_removes_request_votes_and_history(
    client: TestClient, admin: Account, make_request: MakeRequest, account: Account, db_url: str
) -> None:
    request_id = make_request()["id"]
    move(client, admin, request_id, "approve")
    vote = client.post(f"{BASE}/requests/{request_id}/vote", headers=account.headers)
    assert vote.status_code in (200, 201), vote.text
    assert _rows_of(db_url, request_id) == {
        "pose_requests": 1,
        "pose_request_votes": 1,
        "pose_request_status_changes": 1,
    }
    url = f"{BASE}/admin/pose-requests/{request_id}"
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert client.get(url, headers=admin.headers).status_code == 404
    assert client.delete(url, headers=admin.headers).status_code == 404
    # The votes and the history went with it, not only the request row.
    assert _rows_of(db_url, request_id) == {
        "pose_requests": 0,
        "pose_request_votes": 0,
        "pose_request_status_changes": 0,
    }


def test_unknown_request_is_404(client: TestClient, admin: Account) -> None:
    for path in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        response = move(client, admin, path, "approve")
        assert response.status_code == 404
        assert response.json()["message"] == "Pose request not found"


@pytest.mark.prefect
def test_status_change_emits_event_for_the_requester(
    prefect_api: str,
    client: TestClient,
    admin: Account,
    account: Account,
    make_request: MakeRequest,
) -> None:
    request_id = make_request()["id"]
    assert move(client, admin, request_id, "approve", adminNotes="Nice idea").status_code == 200

    events = wait_for_events(
        prefect_api, "posegen.pose-request.status-changed", f"posegen.pose-request.{request_id}"
    )

    assert len(events) == 1
    event = events[0]
    assert event["payload"] == {
        "requestId": request_id,
        "from": "pending",
        "to": "approved",
        "notes": "Nice idea",
        "adminId": str(admin.id),
    }
    related = {(r["prefect.resource.id"], r["prefect.resource.role"]) for r in event["related"]}
    assert (f"posegen.user.{account.id}", "user") in related


def test_status_change_succeeds_when_prefect_is_unreachable(
    prefect_unreachable: None, client: TestClient, admin: Account, make_request: MakeRequest
) -> None:
    request_id = make_request()["id"]
    response = move(client, admin, request_id, "approve")
    assert (response.status_code, response.json()["status"]) == (200, "approved")


@pytest.mark.postgres
def test_two_admins_acting_at_once_cannot_both_move_a_request(pg_url: str) -> None:
    """Approve and reject race from pending: one wins, the other gets a 409, history has one row."""
    owner, *admins = (make_user(pg_url, credits=0, admin=i > 0) for i in range(3))
    with session_scope(pg_url) as session:
        user = session.get(User, owner)
        assert user is not None
        request_id = pose_requests.create_request(
            session, user, PoseRequestCreate(pose_name=f"Race {uuid.uuid4().hex[:6]}")
        ).id
    moves = [
        (admins[0], RequestStatus.APPROVED, AdminAction()),
        (admins[1], RequestStatus.REJECTED, AdminAction(admin_notes="no")),
    ]
    barrier = threading.Barrier(len(moves))
    outcomes: list[str] = []

    def act(admin_id: uuid.UUID, target: RequestStatus, action: AdminAction) -> None:
        with session_scope(pg_url) as session:
            admin = session.get(User, admin_id)
            assert admin is not None
            barrier.wait(timeout=30)
            try:
                pose_requests.change_status(session, admin, request_id, target, action)
                outcomes.append("moved")
            except Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=act, args=m) for m in moves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["conflict", "moved"]
    with session_scope(pg_url) as session:
        assert len(pose_requests.history(session, request_id)) == 1
        pose_requests.delete_request(session, request_id)
        with pytest.raises(NotFound):
            pose_requests.get_request(session, request_id)
