"""The seller signs in through a one-time link and builds a generation by dropping photos."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, expect
from sqlalchemy import select

from posegen.db.models import Generation, Pose
from posegen.db.session import session_scope
from tests.web.conftest import (
    DESKTOP,
    Seller,
    WebStack,
    check_accessibility,
    sample_photo,
    screenshot,
)


def _generations(stack: WebStack, user_id: uuid.UUID) -> list[Generation]:
    with session_scope(stack.db_url) as session:
        rows = session.scalars(select(Generation).where(Generation.user_id == user_id)).all()
        for generation in rows:
            _ = generation.poses
        return list(rows)


def test_sign_in_link_sets_a_session_cookie_and_leaves_the_code_out_of_the_address(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path
) -> None:
    seller = new_seller(credits=100)
    page = seller.page

    assert page.url == f"{web_stack.base_url}/app"
    cookie = next(c for c in seller.context.cookies() if c["name"] == "posegen_session")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
    assert cookie["value"] not in page.content()
    expect(page.locator("[data-credit-balance]")).to_have_text("100")
    expect(page.get_by_role("heading", name="Your generations")).to_be_visible()
    expect(page.get_by_text("No generations yet.")).to_be_visible()
    check_accessibility(page, axe_script)


def test_dropped_photos_become_a_generation_and_a_refused_file_says_why(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path, tmp_path: Path
) -> None:
    seller = new_seller()
    page = seller.page
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not a picture")

    page.locator("#photo-input").set_input_files(
        [sample_photo("astronaut.jpg"), sample_photo("cameraman.jpg"), not_an_image]
    )

    done = page.locator("[data-upload-done]")
    expect(done).to_contain_text("2 of 3 photos added; 1 refused", timeout=30_000)
    refused = page.locator(".upload-item.is-failed")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("notes.png")
    expect(refused.locator(".upload-state")).not_to_be_empty()
    expect(page.locator(".upload-item.is-done")).to_have_count(2)
    [generation] = _generations(web_stack, seller.id)
    assert len(generation.poses) == 2
    stored = sorted(
        p.name for p in (web_stack.storage_dir / "poses" / str(generation.id)).iterdir()
    )
    assert stored == sorted(f"{pose.id}.png" for pose in generation.poses)
    check_accessibility(page, axe_script)
    screenshot(page, "upload")

    page.locator("[data-open-generation]").click()
    page.wait_for_url(f"**/app/generations/{generation.id}")
    expect(page.locator("[data-pose-card]")).to_have_count(2)
    expect(page.locator("[data-pose-card] [data-pose-status]").first).to_have_text("Ready")

    page.goto("/app")
    card = page.locator(".generation-card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("2 poses")
    check_accessibility(page, axe_script)
    screenshot(page, "generations")
    assert seller.errors == []


def test_the_generation_list_is_newest_first_and_paginated(
    new_seller: Callable[..., Seller], web_stack: WebStack
) -> None:
    from posegen.domain.poses import create_generation

    seller = new_seller()
    with session_scope(web_stack.db_url) as session:
        ids = [create_generation(session, seller.id).id for _ in range(14)]

    page = seller.page
    page.goto("/app")
    cards = page.locator(".generation-card")
    expect(cards).to_have_count(12)
    assert cards.first.get_attribute("href") == f"/app/generations/{ids[-1]}"
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    page.get_by_role("link", name="Older →").click()
    expect(cards).to_have_count(2)
    assert cards.last.get_attribute("href") == f"/app/generations/{ids[0]}"
    with session_scope(web_stack.db_url) as session:
        assert session.scalar(select(Pose).where(Pose.generation_id.in_(ids))) is None


def test_photos_dropped_on_the_zone_upload_like_chosen_ones(
    new_seller: Callable[..., Seller], web_stack: WebStack
) -> None:
    seller = new_seller()
    page = seller.page

    # A real drop event carrying two files the page made itself (canvas → PNG → File).
    page.evaluate(
        """async () => {
          const files = [];
          for (const [name, colour] of [["red.png", "#c00"], ["blue.png", "#00c"]]) {
            const canvas = document.createElement("canvas");
            canvas.width = 320; canvas.height = 480;
            const ctx = canvas.getContext("2d");
            ctx.fillStyle = colour; ctx.fillRect(0, 0, 320, 480);
            const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
            files.push(new File([blob], name, { type: "image/png" }));
          }
          const transfer = new DataTransfer();
          for (const file of files) transfer.items.add(file);
          const zone = document.querySelector("[data-dropzone]");
          zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true }));
          zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }"""
    )

    expect(page.locator("[data-upload-done]")).to_contain_text("2 of 2 photos added.")
    expect(page.locator(".generation-card")).to_have_count(1)
    [generation] = _generations(web_stack, seller.id)
    assert sorted((pose.width, pose.height) for pose in generation.poses) == [(320, 480)] * 2


def test_the_sign_in_and_not_found_pages_are_accessible(
    new_seller: Callable[..., Seller], web_stack: WebStack, browser: Browser, axe_script: Path
) -> None:
    visitor = browser.new_context(base_url=web_stack.base_url, viewport=DESKTOP)
    page = visitor.new_page()
    answer = page.goto("/app")
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading", name="Sign in to posegen")).to_be_visible()
    check_accessibility(page, axe_script)
    screenshot(page, "sign-in")
    visitor.close()

    seller = new_seller()
    answer = seller.page.goto(f"/app/poses/{uuid.uuid4()}")
    assert answer is not None and answer.status == 404
    expect(seller.page.get_by_role("alert")).to_have_text("Pose not found")
    check_accessibility(seller.page, axe_script)
