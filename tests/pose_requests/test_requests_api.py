"""Pose requests over HTTP: submitting (validation, duplicates), listing (pages, filters, sort,
search), the public board, admin-only access, the library and the stats endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.config import reset_settings
from tests.pose_requests.conftest import BASE, Account, MakeRequest, move

ADMIN = f"{BASE}/admin/pose-requests"
SOME_ID = "00000000-0000-4000-8000-000000000000"


def _names(body: dict[str, Any]) -> list[str]:
    return [item["poseName"] for item in body["items"]]


# -- submitting ---------------------------------------------------------------------------------


def test_submit_returns_201_with_the_request(
    client: TestClient, account: Account, admin: Account
) -> None:
    category = client.post(
        f"{BASE}/admin/categories", json={"name": "Standing"}, headers=admin.headers
    ).json()
    response = client.post(
        f"{BASE}/requests",
        json={
            "poseName": "  Leaning on a wall ",
            "description": "For jacket shots",
            "referenceImageUrl": "https://example.com/lean.jpg",
            "categoryId": category["id"],
            "useCase": "ecommerce",
        },
        headers=account.headers,
    )
    assert response.status_code == 201
    body = response.json()["request"]  # the seed's shape: `response.body.request.status`
    assert body["poseName"] == "Leaning on a wall"
    assert (body["status"], body["votesCount"], body["hasVoted"]) == ("pending", 0, False)
    assert (body["categoryId"], body["categoryName"]) == (category["id"], "Standing")
    assert body["userId"] == str(account.id) and body["createdAt"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "poseName", "Field required"),
        ({"poseName": "   "}, "poseName", "must not be empty"),
        ({"poseName": "x" * 101}, "poseName", "at most 100 characters"),
        ({"poseName": "?!"}, "poseName", "letters or digits"),
        ({"poseName": "ok", "description": "d" * 501}, "description", "at most 500"),
        ({"poseName": "ok", "referenceImageUrl": "ftp://x"}, "referenceImageUrl", "http(s) URL"),
        ({"poseName": "ok", "categoryId": "nope"}, "categoryId", "UUID"),
        ({"poseName": "ok", "useCase": "u" * 201}, "useCase", "at most 200"),
        ({"poseName": "ok", "votesCount": 99}, "votesCount", "not permitted"),
    ],
)
def test_invalid_submissions_name_the_field(
    body: dict[str, Any], field: str, says: str, client: TestClient, account: Account
) -> None:
    response = client.post(f"{BASE}/requests", json=body, headers=account.headers)
    assert response.status_code == 400
    problem = response.json()
    assert problem["error"] == "ValidationError"
    assert problem["message"].startswith(f"{field}: ")
    assert says in problem["message"]


def test_unknown_category_is_a_400_on_that_field(client: TestClient, account: Account) -> None:
    response = client.post(
        f"{BASE}/requests", json={"poseName": "ok", "categoryId": SOME_ID}, headers=account.headers
    )
    assert response.status_code == 400
    assert response.json()["field"] == "categoryId"


def test_duplicate_open_request_is_refused(
    client: TestClient,
    account: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    make_request("Hand on hip")
    again = client.post(
        f"{BASE}/requests", json={"poseName": "hand-on  HIP!"}, headers=account.headers
    )
    assert again.status_code == 409
    assert again.json()["message"] == "You already have a pending request for this pose"
    # Another user may ask for the same pose.
    make_request("Hand on hip", owner=new_account())


def test_closed_request_no_longer_blocks_a_new_one(
    client: TestClient, admin: Account, make_request: MakeRequest
) -> None:
    first = make_request("Crossed arms")
    move(client, admin, first["id"], "reject", adminNotes="unclear")
    make_request("Crossed arms")


def test_only_pending_own_requests_can_be_withdrawn(
    client: TestClient,
    account: Account,
    admin: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    approved = make_request("Jumping")["id"]
    move(client, admin, approved, "approve")
    refused = client.delete(f"{BASE}/requests/{approved}", headers=account.headers)
    assert refused.status_code == 409 and "this request is approved" in refused.json()["message"]
    pending = make_request("Kneeling")["id"]
    assert (
        client.delete(f"{BASE}/requests/{pending}", headers=new_account().headers).status_code
        == 404
    )
    assert client.delete(f"{BASE}/requests/{pending}", headers=account.headers).status_code == 204


# -- listing ------------------------------------------------------------------------------------


def test_own_list_paginates_filters_searches_and_sorts(
    client: TestClient,
    account: Account,
    admin: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    make_request("Someone else's", owner=new_account())
    names = [f"Pose {i}" for i in range(5)]
    ids = [make_request(name)["id"] for name in names]
    move(client, admin, ids[1], "approve")
    move(client, admin, ids[3], "approve")
    voters = [new_account() for _ in range(2)]
    for voter in voters:
        client.post(f"{BASE}/requests/{ids[3]}/vote", headers=voter.headers)
    client.post(f"{BASE}/requests/{ids[1]}/vote", headers=voters[0].headers)

    def get(**params: Any) -> dict[str, Any]:
        response = client.get(f"{BASE}/requests", params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        return response.json()

    first = get(limit=2)
    assert _names(first) == ["Pose 4", "Pose 3"]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 5, "totalPages": 3}
    assert _names(get(limit=2, page=3)) == ["Pose 0"]
    assert _names(get(limit=2, page=4)) == []
    assert _names(get(sort="votes", limit=3)) == ["Pose 3", "Pose 1", "Pose 4"]
    assert _names(get(status="approved")) == ["Pose 3", "Pose 1"]
    assert _names(get(search="pose 2")) == ["Pose 2"]
    assert _names(get(search="%")) == []  # wildcards are literal


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"status": "done"}, "status"),
        ({"sort": "random"}, "sort"),
    ],
)
def test_bad_list_parameters_are_400(
    params: dict[str, Any], field: str, client: TestClient, account: Account
) -> None:
    response = client.get(f"{BASE}/requests", params=params, headers=account.headers)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("premoderation", "expected"),
    [
        # Default: pending requests are on the board and take every seller's votes.
        (False, [("D", 1, True), ("B", 1, True), ("A", 0, False)]),  # ties: newest first
        # Pre-moderation: only what an admin accepted; the vote on pending D was refused.
        (True, [("B", 1, True), ("A", 0, False)]),
    ],
    ids=["community", "premoderation"],
)
def test_popular_board_shows_open_requests_by_votes(
    premoderation: bool,
    expected: list[tuple[str, int, bool]],
    client: TestClient,
    admin: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSEGEN_POSE_REQUESTS_PREMODERATION", str(premoderation).lower())
    reset_settings()
    author, fan = new_account(), new_account()
    ids = {name: make_request(name, owner=author)["id"] for name in "ABCD"}
    move(client, admin, ids["A"], "approve")
    move(client, admin, ids["B"], "approve")
    move(client, admin, ids["B"], "mark-in-progress")
    move(client, admin, ids["C"], "reject", adminNotes="no")  # D stays pending
    client.post(f"{BASE}/requests/{ids['B']}/vote", headers=fan.headers)
    pending_vote = client.post(f"{BASE}/requests/{ids['D']}/vote", headers=fan.headers)
    assert pending_vote.status_code == (404 if premoderation else 200)

    response = client.get(f"{BASE}/requests/popular", params={"limit": 100}, headers=fan.headers)
    board = [i for i in response.json()["items"] if i["id"] in ids.values()]
    assert [(i["poseName"], i["votesCount"], i["hasVoted"]) for i in board] == expected
    seen = client.get(f"{BASE}/requests/{ids['D']}", headers=fan.headers)
    assert seen.status_code == (404 if premoderation else 200)
    # The author and admins see a pending request either way.
    assert client.get(f"{BASE}/requests/{ids['D']}", headers=author.headers).status_code == 200
    assert client.get(f"{ADMIN}/{ids['D']}", headers=admin.headers).status_code == 200


def test_admin_popular_ranks_open_requests_by_votes(
    client: TestClient,
    admin: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    """GET /admin/pose-requests/popular?limit= (the seed's): what sellers want, pending too."""
    author = new_account()
    ids = {name: make_request(f"Popular {name}", owner=author)["id"] for name in "XYZ"}
    move(client, admin, ids["Z"], "reject", adminNotes="no")
    for voter in (new_account(), new_account()):
        client.post(f"{BASE}/requests/{ids['Y']}/vote", headers=voter.headers)

    response = client.get(f"{ADMIN}/popular", params={"limit": 100}, headers=admin.headers)
    assert response.status_code == 200, response.text
    ranked = [i for i in response.json()["items"] if i["id"] in ids.values()]
    assert [(i["poseName"], i["votesCount"], i["status"]) for i in ranked] == [
        ("Popular Y", 2, "pending"),
        ("Popular X", 0, "pending"),
    ]
    assert ranked[0]["requesterEmail"].startswith("user-")
    assert (
        client.get(f"{ADMIN}/popular", params={"limit": 101}, headers=admin.headers).status_code
        == 400
    )


def test_admin_list_filters_by_status_category_user_and_search(
    client: TestClient,
    admin: Account,
    account: Account,
    new_account: Callable[..., Account],
    make_request: MakeRequest,
) -> None:
    category = client.post(
        f"{BASE}/admin/categories", json={"name": "Sitting pose"}, headers=admin.headers
    ).json()["id"]
    make_request("Cross-legged", categoryId=category, description="on the floor")
    make_request("Chair lean", categoryId=category)
    rejected = make_request("Unicorn")["id"]
    move(client, admin, rejected, "reject", adminNotes="no")

    def get(**params: Any) -> dict[str, Any]:
        response = client.get(ADMIN, params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        return response.json()

    other = make_request("Someone else's", owner=new_account())["id"]
    by_user = get(userId=str(account.id), limit=100)
    assert {i["userId"] for i in by_user["items"]} == {str(account.id)}
    assert other not in {i["id"] for i in by_user["items"]}

    by_category = get(categoryId=category, sort="oldest")
    assert _names(by_category) == ["Cross-legged", "Chair lean"]
    assert by_category["items"][0]["requesterEmail"].startswith("user-")
    assert _names(get(search="FLOOR")) == ["Cross-legged"]  # descriptions too, any case
    assert "Unicorn" in _names(get(status="rejected", limit=100))
    assert "Unicorn" not in _names(get(status="pending", limit=100))


# -- access -------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("get", ADMIN),
    ("get", f"{ADMIN}/stats"),
    ("get", f"{ADMIN}/stats/history"),
    ("get", f"{ADMIN}/popular"),
    ("get", f"{ADMIN}/{SOME_ID}"),
    ("post", f"{ADMIN}/{SOME_ID}/approve"),
    ("post", f"{ADMIN}/{SOME_ID}/reject"),
    ("post", f"{ADMIN}/{SOME_ID}/mark-in-progress"),
    ("post", f"{ADMIN}/{SOME_ID}/mark-completed"),
    ("put", f"{ADMIN}/{SOME_ID}/notes"),
    ("delete", f"{ADMIN}/{SOME_ID}"),
    ("post", f"{BASE}/admin/categories"),
    ("post", f"{BASE}/admin/library"),
]


@pytest.mark.parametrize(("method", "url"), ADMIN_ROUTES)
def test_admin_routes_refuse_users_with_403_and_strangers_with_401(
    method: str, url: str, client: TestClient, account: Account
) -> None:
    body = {"adminNotes": "x", "name": "x"} if method in ("post", "put") else None
    as_user = client.request(method.upper(), url, json=body, headers=account.headers)
    assert as_user.status_code == 403
    assert as_user.json() == {"error": "Forbidden", "message": "This needs an administrator."}
    assert client.request(method.upper(), url, json=body).status_code == 401


# -- library and stats ----------------------------------------------------------------------------


def test_library_lists_filters_and_reads_poses(client: TestClient, admin: Account) -> None:
    category = client.post(
        f"{BASE}/admin/categories", json={"name": "Dynamic"}, headers=admin.headers
    ).json()
    duplicate = client.post(
        f"{BASE}/admin/categories", json={"name": "Dynamic"}, headers=admin.headers
    )
    assert duplicate.status_code == 409
    created = client.post(
        f"{BASE}/admin/library",
        json={"name": "Mid-jump", "categoryId": category["id"], "imageKey": "uploads/lib/jump.png"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    item = created.json()
    assert item["imageUrl"] == f"{BASE}/files/uploads/lib/jump.png"

    listed = client.get(
        f"{BASE}/library", params={"categoryId": category["id"]}, headers=admin.headers
    ).json()
    assert [i["name"] for i in listed["items"]] == ["Mid-jump"]
    assert listed["items"][0]["categoryName"] == "Dynamic"
    searched = client.get(f"{BASE}/library", params={"search": "JUMP"}, headers=admin.headers)
    assert "Mid-jump" in [i["name"] for i in searched.json()["items"]]
    one = client.get(f"{BASE}/library/{item['id']}", headers=admin.headers)
    assert one.json() == item
    assert client.get(f"{BASE}/library/{SOME_ID}", headers=admin.headers).status_code == 404
    names = [
        c["name"] for c in client.get(f"{BASE}/categories", headers=admin.headers).json()["items"]
    ]
    assert "Dynamic" in names


def test_live_stats_count_what_is_in_the_database(
    client: TestClient, admin: Account, account: Account, make_request: MakeRequest
) -> None:
    before = client.get(f"{ADMIN}/stats", headers=admin.headers).json()
    request_id = make_request("Counting")["id"]
    move(client, admin, request_id, "approve")
    client.post(f"{BASE}/requests/{request_id}/vote", headers=account.headers)

    after = client.get(f"{ADMIN}/stats", headers=admin.headers).json()
    # The seed's fields, then posegen's detail.
    seed = ("total", "pending", "approved", "inProgress", "completed", "rejected")
    assert set(after) >= set(seed)
    assert after["total"] == sum(after[name] for name in seed[1:]) == after["totalRequests"]
    assert (after["approved"], after["pending"]) == (before["approved"] + 1, before["pending"])
    assert after["totalRequests"] == before["totalRequests"] + 1
    assert after["totalVotes"] == before["totalVotes"] + 1
    assert after["byStatus"]["approved"] == before["byStatus"]["approved"] + 1
    assert set(after) >= {"byCategory", "topVoted", "approvalRatio", "rejectionRatio"}


def test_stats_history_returns_recent_snapshots_newest_first(
    client: TestClient, admin: Account, db_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from posegen.db.community import PoseRequestStatsSnapshot
    from posegen.db.session import session_scope

    now = datetime.now(UTC)
    with session_scope(db_url) as session:
        for days_ago, marker in ((0.1, "new"), (2, "older"), (10, "old")):
            session.add(
                PoseRequestStatsSnapshot(
                    created_at=now - timedelta(days=days_ago), stats={"marker": marker}
                )
            )

    def markers(days: int) -> list[str]:
        response = client.get(
            f"{ADMIN}/stats/history", params={"days": days, "limit": 100}, headers=admin.headers
        )
        assert response.status_code == 200
        return [
            s["stats"].get("marker") for s in response.json()["items"] if "marker" in s["stats"]
        ]

    assert markers(1)[:1] == ["new"] and "older" not in markers(1)
    assert [m for m in markers(7) if m in ("new", "older", "old")][:2] == ["new", "older"]
    assert "old" not in markers(7) and "old" in markers(30)
    bad = client.get(f"{ADMIN}/stats/history", params={"days": 0}, headers=admin.headers)
    assert bad.status_code == 400
