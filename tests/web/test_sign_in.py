"""Web sign-in and its guards, over HTTP: one-time links, cookie flags, CSRF, sign-out, and
someone else's pages and files looking exactly like missing ones."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from posegen.api.app import create_app
from posegen.config import reset_settings
from posegen.db.models import LoginLink, User, utcnow
from posegen.db.session import session_scope
from posegen.domain.sign_in import LINK_REFUSED, create_login_link
from posegen.storage import get_storage
from tests.api.conftest import BASE, Account, Generated, ledger, png_bytes, pose_status
from tests.security.routes import inventory, sample_path_values

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def link_path(db_url: str, account: Account, minutes: int | None = None) -> str:
    with session_scope(db_url) as session:
        user = session.get(User, account.id)
        assert user is not None
        return create_login_link(session, user, minutes=minutes).path


def sign_in(client: TestClient, db_url: str, account: Account) -> str:
    """Redeem a fresh link in this client; the page's CSRF token."""
    answer = client.get(link_path(db_url, account), follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/app")
    page = client.get("/app")
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match is not None
    return match.group(1)


def test_a_link_signs_in_once_with_an_httponly_lax_cookie(
    client: TestClient, db_url: str, account: Account
) -> None:
    path = link_path(db_url, account)

    first = client.get(path, follow_redirects=False)
    again = TestClient(client.app).get(path, follow_redirects=False)

    assert (first.status_code, first.headers["location"]) == (303, "/app")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("posegen_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=lax"} <= flags
    assert "secure" not in flags  # plain http on the loopback; https below
    assert client.get("/app").status_code == 200
    assert again.status_code == 401
    assert "set-cookie" not in again.headers
    assert LINK_REFUSED in again.text
    assert again.headers["content-type"].startswith("text/html")


def test_an_expired_or_made_up_link_is_refused_alike(
    client: TestClient, db_url: str, account: Account
) -> None:
    path = link_path(db_url, account, minutes=1)
    with session_scope(db_url) as session:
        session.execute(update(LoginLink).values(expires_at=utcnow() - timedelta(seconds=1)))

    expired = client.get(path, follow_redirects=False)
    made_up = client.get("/app/sign-in/not-a-code-we-issued", follow_redirects=False)

    assert (expired.status_code, made_up.status_code) == (401, 401)
    assert LINK_REFUSED in expired.text and LINK_REFUSED in made_up.text
    assert "set-cookie" not in expired.headers
    assert client.get("/app").status_code == 401


def test_the_cookie_is_secure_when_the_app_is_served_over_https(
    client: TestClient, db_url: str, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSEGEN_API_PUBLIC_URL", "https://posegen.example.com")
    reset_settings()

    answer = client.get(link_path(db_url, account), follow_redirects=False)

    assert "secure" in answer.headers["set-cookie"].lower().split("; ")
    reset_settings()


def test_pages_without_a_session_show_the_sign_in_page_even_with_a_bearer_token(
    client: TestClient, account: Account, generated: Generated
) -> None:
    for path in ("/app", f"/app/generations/{generated.generation_id}"):
        answer = client.get(path, headers=account.headers)

        assert answer.status_code == 401
        assert "Sign in to posegen" in answer.text
        assert str(generated.pose_id) not in answer.text


def test_cookie_requests_that_change_something_need_the_csrf_token(
    client: TestClient, db_url: str, account: Account, generated: Generated
) -> None:
    token = sign_in(client, db_url, account)
    upload = {"file": ("bg.png", png_bytes(), "image/png")}
    change = {"backgroundMode": "solid_color", "backgroundColor": "#FF8800"}

    missing = client.post(f"{BASE}/uploads", files=upload)
    wrong = client.post(f"{BASE}/uploads", files=upload, headers={"X-CSRF-Token": "guess"})
    no_change = client.post(f"{BASE}/poses/{generated.pose_id}/background", json=change)
    no_link = client.post(f"{BASE}/sign-in-links")

    refused = {
        "error": "Forbidden",
        "message": "This request needs the page's CSRF token: reload the page and try again.",
    }
    for answer in (missing, wrong, no_change, no_link):
        assert (answer.status_code, answer.json()) == (403, refused)
    assert get_storage().list(f"uploads/{account.id}/") == []
    assert ledger(db_url, account.id) == []
    assert pose_status(db_url, generated.pose_id) == "ready"

    # Reading needs no token, and the right token lets the change through.
    assert client.get(f"{BASE}/me").json()["id"] == str(account.id)
    stored = client.post(f"{BASE}/uploads", files=upload, headers={"X-CSRF-Token": token})
    assert stored.status_code == 201
    assert get_storage().list(f"uploads/{account.id}/") == [stored.json()["key"]]


def test_sign_out_needs_the_csrf_token_and_ends_the_session_on_the_server(
    client: TestClient, db_url: str, account: Account
) -> None:
    token = sign_in(client, db_url, account)
    secret = client.cookies.get("posegen_session")

    forged = client.post("/app/sign-out", data={"csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/app").status_code == 200

    out = client.post("/app/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/app/sign-in?signed_out=true")
    assert 'posegen_session=""' in out.headers["set-cookie"]
    replay = TestClient(client.app, cookies={"posegen_session": secret or ""})
    assert replay.get("/app").status_code == 401
    assert replay.get(f"{BASE}/me").status_code == 401


PAGES_WITH_IDS = [
    route for route in inventory(create_app()) if route.needs_session and route.params
]


def test_someone_elses_pages_and_files_look_exactly_like_missing_ones(
    client: TestClient,
    db_url: str,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> None:
    victim = new_account()
    theirs = new_generation(victim)
    sign_in(client, db_url, new_account())
    fmt = {"format_name": "instagram_feed"}
    values = {"pose_id": str(theirs.pose_id), "generation_id": str(theirs.generation_id), **fmt}

    assert {route.label for route in PAGES_WITH_IDS} == {
        "GET /app/generations/{generation_id}",
        "GET /app/poses/{pose_id}",
        "GET /app/poses/{pose_id}/previews/{format_name}.jpg",
        "GET /app/library/{pose_id}",  # the library is everyone's: a pose id names no owner
    }
    for route in PAGES_WITH_IDS:
        their_page = client.get(route.url(values))
        missing_page = client.get(route.url(sample_path_values() | fmt))
        assert (their_page.status_code, missing_page.status_code) == (404, 404)
        assert their_page.text == missing_page.text
    their_file = client.get(f"{BASE}/files/{theirs.image_key}")
    missing_file = client.get(f"{BASE}/files/poses/{uuid.uuid4()}/{uuid.uuid4()}.png")
    assert (their_file.status_code, their_file.json()) == (404, missing_file.json())


def test_a_bearer_token_buys_a_one_time_link_for_its_own_user(
    client: TestClient, account: Account
) -> None:
    issued = client.post(f"{BASE}/sign-in-links", headers=account.headers)

    assert issued.status_code == 201
    path = issued.json()["url"].split("://", 1)[1].split("/", 1)[1]
    browser = TestClient(client.app)
    assert browser.get(f"/{path}", follow_redirects=False).status_code == 303
    assert browser.get(f"{BASE}/me").json()["id"] == str(account.id)
    assert TestClient(client.app).get(f"/{path}", follow_redirects=False).status_code == 401
