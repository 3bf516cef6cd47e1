"""The community board and the admin desk against the live stack, in the browser.

A request goes from a seller's form through another seller's votes to the admin's queue and
out as a library pose; the author's page learns every step from the event stream (no reload).
The database must hold what the pages say: one vote row per counted vote, one history row
per move.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from posegen.db.community import (
    PoseCategory,
    PoseLibraryItem,
    PoseRequest,
    PoseRequestStatusChange,
    PoseRequestVote,
    RequestStatus,
)
from posegen.db.models import User
from posegen.db.session import session_scope
from posegen.domain import pose_requests, request_stats
from posegen.domain.pose_library import (
    CategoryCreate,
    LibraryItemCreate,
    create_category,
    create_library_item,
)
from posegen.domain.pose_requests import AdminAction, PoseRequestCreate
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    Seller,
    WebStack,
    check_accessibility,
    png_file,
    screenshot,
)

LIVE = 30_000  # ms: an admin's move → Prefect event → the author's page


def add_category(stack: WebStack, name: str) -> uuid.UUID:
    with session_scope(stack.db_url) as session:
        return create_category(session, CategoryCreate(name=name)).id


def add_library_pose(stack: WebStack, owner: uuid.UUID, name: str) -> uuid.UUID:
    """A library pose with a picture uploaded by an admin (uploads/{admin}/…)."""
    key = f"uploads/{owner}/{uuid.uuid4()}.png"
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), "#2E8B57").save(buffer, format="PNG")
    stack.storage.write_bytes(key, buffer.getvalue(), "image/png")
    with session_scope(stack.db_url) as session:
        return create_library_item(session, LibraryItemCreate(name=name, image_key=key)).id


def read_request(stack: WebStack, name: str) -> PoseRequest:
    with session_scope(stack.db_url) as session:
        request = session.scalars(select(PoseRequest).where(PoseRequest.pose_name == name)).one()
        session.expunge(request)
        return request


def card(page: Page, name: str) -> Locator:
    return page.locator("[data-request-card]").filter(
        has=page.locator(".request-name", has_text=name)
    )


def image_loaded(page: Page, selector: str) -> bool:
    return bool(
        page.locator(selector).first.evaluate("img => img.complete && img.naturalWidth > 0")
    )


def assert_fits_a_phone(page: Page) -> None:
    """Nothing wider than a 390 px screen: the page scrolls down, never sideways."""
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest('dialog')"
        " && !e.closest('.table-wrap'))"
        ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
    )
    width = page.evaluate("() => document.documentElement.scrollWidth")
    page.set_viewport_size(size or DESKTOP)
    assert (width, wide) == (PHONE["width"], [])


def test_a_request_goes_from_the_form_through_votes_to_a_completed_library_pose(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    category = f"Standing {suffix}"
    category_id = add_category(web_stack, category)
    author = new_seller()
    page = author.page
    page.goto("/app/requests")
    expect(page.get_by_text("You have not requested a pose yet.")).to_be_visible()
    check_accessibility(page, axe_script)
    page.evaluate("() => { window.__loaded = true; }")  # gone if the page reloads

    # Checked before it is sent; the counters follow the typing.
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator('[data-field-error="poseName"]')).to_have_text("Give the pose a name.")
    name = f"Hand on hip {suffix}"
    page.get_by_label("Pose name").fill(name)
    expect(page.locator('[data-count-for="pose-name"]')).to_have_text(f"{len(name)}/100")
    page.get_by_label("Description").fill("Side view, one hand on the hip, for dresses.")
    expect(page.locator('[data-count-for="pose-description"]')).to_have_text("44/500")
    page.get_by_label("Category").select_option(str(category_id))
    page.get_by_label("Use case").fill("Dress listings")
    page.locator("#reference-input").set_input_files(png_file(tmp_path, "ref.png", "#336699"))
    preview = page.locator("[data-reference-preview]")
    expect(preview).to_have_attribute("data-reference-key", re.compile(rf"^uploads/{author.id}/"))
    expect(page.locator("[data-reference-thumb]")).to_have_attribute("src", re.compile("/files/"))
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("[data-toasts]")).to_contain_text(
        "Request submitted! Our team will review it soon."
    )
    mine = card(page, name)
    expect(mine).to_be_visible()
    expect(mine.locator("[data-request-status]")).to_have_text("Pending")
    expect(mine.locator("[data-request-category]")).to_have_text(category)
    expect(mine.locator(".request-ref img")).to_be_visible()
    assert image_loaded(page, f'[data-request-card] .request-ref img[alt*="{name}"]')
    stored = read_request(web_stack, name)
    assert stored.reference_image_url is not None
    assert stored.reference_image_url.startswith(f"uploads/{author.id}/")
    assert web_stack.storage.exists(stored.reference_image_url)

    # The same pose again, however it is spelled: refused, and said plainly.
    page.get_by_label("Pose name").fill(f"  hand ON hip {suffix}!")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator('[data-field-error="poseName"]')).to_have_text(
        "You already have a pending request for this pose."
    )
    check_accessibility(page, axe_script)
    screenshot(page, "pose-requests")

    # A second seller finds it on the board: votes, takes it back, votes again.
    voter = new_seller()
    board = voter.page
    board.goto("/app/requests")
    board.get_by_role("link", name="Community board", exact=True).click()
    expect(board.get_by_role("heading", name="Community board")).to_be_visible()
    board.get_by_label("Search by name").fill(suffix)
    board.get_by_role("button", name="Apply").click()
    theirs = card(board, name)
    expect(theirs).to_have_count(1)
    expect(theirs.locator(".request-ref img")).to_be_visible()
    assert image_loaded(board, ".request-ref img")  # another seller may see the reference
    vote = theirs.locator("[data-vote]")
    for pressed, count in (("true", "1"), ("false", "0"), ("true", "1")):
        vote.click()
        expect(vote).to_have_attribute("aria-pressed", pressed)
        expect(theirs.locator("[data-vote-count]")).to_have_text(count)
    check_accessibility(board, axe_script)
    screenshot(board, "community-board")

    # Two browsers at once: the author's vote and a third seller's, clicked together.
    third = new_seller()
    third.page.goto(f"/app/requests?view=board&q={suffix}")
    page.goto(f"/app/requests?view=board&q={suffix}")
    page.evaluate("() => { window.__loaded = true; }")
    page.locator("[data-vote]").first.dispatch_event("click")
    third.page.locator("[data-vote]").first.dispatch_event("click")
    expect(card(page, name).locator("[data-vote-count]")).to_have_text(re.compile("^[23]$"))
    expect(card(third.page, name).locator("[data-vote-count]")).to_have_text(re.compile("^[23]$"))
    third.page.locator("[data-vote]").first.click()  # the third seller takes theirs back
    expect(card(third.page, name).locator("[data-vote-count]")).to_have_text("2")
    voter.page.reload()
    expect(card(voter.page, name).locator("[data-vote-count]")).to_have_text("2")

    # The admin: top of the queue with 2 votes; approve, start, complete.
    admin = new_seller(admin=True)
    library_id = add_library_pose(web_stack, admin.id, f"Hand on hip, studio {suffix}")
    desk = admin.page
    desk.goto("/app/admin/requests")
    first = desk.locator("[data-queue-row]").first
    expect(first).to_contain_text(name)
    expect(first.locator("[data-queue-votes]")).to_have_text("2")
    expect(first.locator("[data-queue-status]")).to_have_text("Pending")
    first.get_by_role("button", name=f"Review {name}").click()
    dialog = desk.locator("[data-review-dialog]")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Approve")).to_be_visible()
    expect(dialog.get_by_role("button", name="Reject")).to_be_visible()
    expect(dialog.get_by_role("button", name="Mark in progress")).to_be_hidden()
    expect(dialog.locator("[data-complete-box]")).to_be_hidden()
    check_accessibility(desk, axe_script)
    assert_fits_a_phone(desk)
    screenshot(desk, "admin-queue")

    dialog.get_by_label(re.compile("^Admin notes")).fill("Lovely idea, we'll shoot it.")
    dialog.get_by_role("button", name="Approve").click()
    expect(dialog.locator("[data-review-status]")).to_have_text("Approved")
    expect(dialog.get_by_role("button", name="Approve")).to_be_hidden()
    expect(page.locator("[data-toasts]")).to_contain_text(
        f"“{name}” is now approved.", timeout=LIVE
    )
    expect(card(page, name).locator("[data-request-status]")).to_have_text("Approved")
    expect(card(page, name).locator("[data-request-notes]")).to_contain_text("Lovely idea")

    dialog.get_by_role("button", name="Mark in progress").click()
    expect(dialog.locator("[data-review-status]")).to_have_text("In progress")
    expect(card(page, name).locator("[data-request-status]")).to_have_text(
        "In progress", timeout=LIVE
    )

    dialog.get_by_label("Library pose").select_option(str(library_id))
    dialog.get_by_role("button", name="Mark completed").click()
    expect(dialog.locator("[data-review-status]")).to_have_text("Completed")
    expect(dialog.locator("[data-history-item]")).to_have_count(3)
    expect(dialog.locator("[data-review-actions] [data-action]:visible")).to_have_count(1)
    expect(card(page, name).locator("[data-request-status]")).to_have_text(
        "Completed", timeout=LIVE
    )
    link = card(page, name).locator("[data-completed-link]")
    expect(link).to_have_attribute("href", f"/app/library/{library_id}")
    assert page.evaluate("() => window.__loaded") is True  # every change came without a reload
    screenshot(page, "pose-request-completed")
    link.click()
    page.wait_for_url(f"**/app/library/{library_id}")
    expect(page.get_by_role("heading", name=f"Hand on hip, studio {suffix}")).to_be_visible()
    assert image_loaded(page, ".library-image")  # the library's pictures are for every seller
    check_accessibility(page, axe_script)

    with session_scope(web_stack.db_url) as session:
        request = session.scalars(select(PoseRequest).where(PoseRequest.pose_name == name)).one()
        votes = session.scalars(
            select(PoseRequestVote.user_id).where(PoseRequestVote.request_id == request.id)
        ).all()
        moves = session.execute(
            select(PoseRequestStatusChange.from_status, PoseRequestStatusChange.to_status)
            .where(PoseRequestStatusChange.request_id == request.id)
            .order_by(PoseRequestStatusChange.created_at)
        ).all()
        assert request.votes_count == len(votes) == 2
        assert set(votes) == {voter.id, author.id}
        assert [tuple(m) for m in moves] == [
            ("pending", "approved"),
            ("approved", "in_progress"),
            ("in_progress", "completed"),
        ]
        assert (request.status, request.completed_pose_id) == ("completed", library_id)
        assert request.admin_notes == "Lovely idea, we'll shoot it."
    for seller in (author, voter, third, admin):
        assert seller.errors == []


def test_my_requests_page_filter_sort_and_delete_while_pending(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path
) -> None:
    seller = new_seller(phone=True)
    with session_scope(web_stack.db_url) as session:
        user = session.get(User, seller.id)
        assert user is not None
        for index in range(11):
            pose_requests.create_request(
                session, user, PoseRequestCreate(pose_name=f"Pose number {index:02d}")
            )
    page = seller.page
    page.goto("/app/requests")
    page.evaluate("() => { window.__loaded = true; }")
    cards = page.locator("[data-request-list] [data-request-card]")
    expect(cards).to_have_count(9)
    expect(cards.first.locator(".request-name")).to_have_text("Pose number 10")
    page.get_by_role("link", name="Next →").click()
    expect(cards).to_have_count(2)
    expect(page.locator("[data-request-list] .pager")).to_contain_text("Page 2 of 2")
    assert "page=2" in page.url

    page.get_by_label("Sort").select_option("oldest")
    expect(cards.first.locator(".request-name")).to_have_text("Pose number 00")
    page.get_by_label("Search by name").fill("number 07")
    page.get_by_role("button", name="Apply").click()
    expect(cards).to_have_count(1)
    page.get_by_label("Status").select_option("completed")
    expect(page.locator("[data-empty]")).to_contain_text("No requests match.")
    page.get_by_label("Status").select_option("pending")
    expect(cards).to_have_count(1)

    # The actions menu: details, and delete (own, pending).
    only = cards.first
    only.get_by_label("Actions for Pose number 07").click()
    only.get_by_role("button", name="View details").click()
    details = page.locator("[data-request-dialog]")
    expect(details).to_be_visible()
    expect(details.locator("dd").first).to_have_text("Pending")
    check_accessibility(page, axe_script)
    details.get_by_role("button", name="Close").click()
    page.once("dialog", lambda dialog: dialog.accept())
    only.get_by_label("Actions for Pose number 07").click()
    only.get_by_role("button", name="Delete request").click()
    expect(page.locator("[data-toasts]")).to_contain_text("deleted")
    expect(page.locator("[data-empty]")).to_be_visible()
    assert page.evaluate("() => window.__loaded") is True
    with session_scope(web_stack.db_url) as session:
        left = session.scalars(
            select(PoseRequest.pose_name).where(PoseRequest.user_id == seller.id)
        ).all()
        assert len(left) == 10 and "Pose number 07" not in left
    assert seller.errors == []


def test_a_seller_never_sees_the_admin_desk(
    new_seller: Callable[..., Seller], axe_script: Path
) -> None:
    seller = new_seller()
    page = seller.page
    expect(page.get_by_role("link", name="Pose requests")).to_be_visible()
    expect(page.locator("[data-admin-link]")).to_have_count(0)
    for path in ("/app/admin/requests", "/app/admin/library", "/app/admin/stats"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("Only administrators can see this page.")).to_be_visible()
    check_accessibility(page, axe_script)


def test_the_admin_adds_to_the_library_reads_statistics_and_sees_an_illegal_move_refused(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    admin = new_seller(admin=True)
    desk = admin.page
    expect(desk.locator("[data-admin-link]")).to_be_visible()

    desk.goto("/app/admin/library")
    desk.get_by_label("New category").fill(f"Sitting {suffix}")
    desk.get_by_role("button", name="Add category").click()
    expect(desk.locator("[data-category-list]")).to_contain_text(f"Sitting {suffix}")
    desk.get_by_label("Name", exact=True).fill(f"Cross-legged {suffix}")
    desk.get_by_label("Category", exact=True).select_option(label=f"Sitting {suffix}")
    desk.get_by_label("Image").set_input_files(png_file(tmp_path, "pose.png", "#aa5500"))
    desk.get_by_role("button", name="Add pose").click()
    expect(desk.locator("[data-library-list]")).to_contain_text(f"Cross-legged {suffix}")
    with session_scope(web_stack.db_url) as session:
        item = session.scalars(
            select(PoseLibraryItem).where(PoseLibraryItem.name == f"Cross-legged {suffix}")
        ).one()
        category = session.get(PoseCategory, item.category_id)
        assert category is not None and category.name == f"Sitting {suffix}"
        assert item.image_key is not None and web_stack.storage.exists(item.image_key)
    check_accessibility(desk, axe_script)
    screenshot(desk, "admin-library")

    # An illegal move: the page still offers it, the API says no, the page says why.
    seller = new_seller()
    name = f"Jumping {suffix}"
    with session_scope(web_stack.db_url) as session:
        author = session.get(User, seller.id)
        assert author is not None
        request = pose_requests.create_request(session, author, PoseRequestCreate(pose_name=name))
        request_id = request.id
    desk.goto(f"/app/admin/requests?q={suffix}")
    desk.get_by_role("button", name=f"Review {name}").click()
    dialog = desk.locator("[data-review-dialog]")
    expect(dialog.get_by_role("button", name="Approve")).to_be_visible()
    message = dialog.locator("[data-review-message]")
    dialog.get_by_role("button", name="Reject").click()  # reject needs notes: checked first
    expect(message).to_contain_text("a rejection needs a reason")
    with session_scope(web_stack.db_url) as session:
        boss = session.get(User, admin.id)
        assert boss is not None
        pose_requests.change_status(
            session,
            boss,
            request_id,
            RequestStatus.REJECTED,
            AdminAction(admin_notes="Duplicate of another request"),
        )
    dialog.get_by_role("button", name="Approve").click()
    expect(message).to_contain_text("Cannot approve this request: it is rejected")
    desk.goto(f"/app/admin/requests?q={suffix}&status=rejected")
    expect(desk.locator("[data-queue-row]")).to_have_count(1)

    # Statistics: the live counts, and charts from stored hourly snapshots.
    with session_scope(web_stack.db_url) as session:
        for _ in range(2):
            stats = request_stats.compute_stats(
                request_stats.load_request_frame(session, _now()), _now()
            )
            request_stats.store_snapshot(session, stats)
        live = request_stats.live_stats(session)
    desk.goto("/app/admin/stats")
    expect(desk.locator('[data-stat="total"]')).to_have_text(str(live["totalRequests"]))
    expect(desk.locator('[data-stat="rejected"]')).to_have_text(str(live["byStatus"]["rejected"]))
    expect(desk.locator('[data-chart="by-status"] rect')).to_have_count(5)
    expect(desk.locator('[data-chart="over-time"] polyline')).to_have_count(5)
    expect(desk.locator('[data-chart="top"] rect').first).to_be_visible()
    check_accessibility(desk, axe_script)
    screenshot(desk, "admin-stats")
    assert admin.errors == []


def _now() -> datetime:
    return datetime.now(UTC)
