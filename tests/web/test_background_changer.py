"""The BackgroundChanger page against the live stack: every mode, failures, refusals.

Each change goes through the real API, the warm pool and the flow; the result must appear on
the page from the event stream (no reload), and the database and storage must hold what the
page says: the charge, the refund, the new image.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain.poses import import_generation
from tests.api.conftest import balance, ledger
from tests.fake_bfl import FakeBFLServer
from tests.web.conftest import (
    Seller,
    WebStack,
    check_accessibility,
    png_file,
    sample_photo,
    screenshot,
)

CHANGE_SECONDS = 90_000  # ms: a change on a busy two-core machine, with room to spare


@pytest.fixture
def fake_flux(web_stack: WebStack) -> FakeBFLServer:
    """The stack's fake BFL server, reset for this test (the runner holds its URL and key)."""
    web_stack.fake_bfl.reset()
    return web_stack.fake_bfl


def add_pose(stack: WebStack, user_id: uuid.UUID, photo: str = "astronaut.jpg") -> uuid.UUID:
    with session_scope(stack.db_url) as session:
        generation = import_generation(
            session, stack.storage, user_id, [sample_photo(photo).read_bytes()]
        )
        return generation.poses[0].id


def read_pose(stack: WebStack, pose_id: uuid.UUID) -> Pose:
    with session_scope(stack.db_url) as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        session.expunge(pose)
        return pose


def submit_and_wait(page: Page, button: str = "[data-change-submit]") -> None:
    """Press the button and wait for the pushed outcome (the message replaces the last one)."""
    message = page.locator("[data-change-message]")
    page.locator(button).click()
    expect(page.locator("[data-working]")).to_be_visible()
    expect(page.locator("[data-working]")).to_be_hidden(timeout=CHANGE_SECONDS)
    expect(message).to_be_visible()


def corner_colour(stack: WebStack, key: str) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(stack.storage.read_bytes(key))).convert("RGB")
    return image.getpixel((2, 2))  # type: ignore[return-value]


def test_each_mode_changes_the_background_and_the_result_arrives_without_a_reload(
    new_seller: Callable[..., Seller],
    web_stack: WebStack,
    fake_flux: FakeBFLServer,
    axe_script: Path,
    tmp_path: Path,
) -> None:
    seller = new_seller(credits=100)
    pose_id = add_pose(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/poses/{pose_id}")
    check_accessibility(page, axe_script)
    screenshot(page, "background-changer")
    submit = page.locator("[data-change-submit]")
    expect(submit).to_contain_text("10 credits · 90 left")
    page.evaluate("() => { window.__loaded = true; }")  # gone if the page reloads

    # Solid colour: the hex field and the picker stay in step.
    page.locator("#colour-hex").fill("#FF8800")
    expect(page.locator("#colour-picker")).to_have_value("#ff8800")
    submit_and_wait(page)
    expect(page.locator("[data-change-message]")).to_have_text(
        "Done: your new background is ready."
    )
    result = page.locator("[data-result]")
    expect(result).to_be_visible()
    expect(result).to_have_attribute("src", _src_pattern(pose_id))
    expect(page.locator("[data-credit-balance]")).to_have_text("90")
    expect(submit).to_contain_text("10 credits · 80 left")
    changed = read_pose(web_stack, pose_id)
    assert (changed.background_mode, changed.background_color) == ("solid_color", "#FF8800")
    assert _close(corner_colour(web_stack, changed.image_key), (255, 136, 0))
    check_accessibility(page, axe_script)
    screenshot(page, "background-changed")

    # Uploaded image: dropped on the page, stored through POST /uploads, then used.
    page.get_by_label("Your image").check()
    page.locator("#bg-input").set_input_files(png_file(tmp_path, "green.png", "#2E8B57"))
    expect(page.locator("[data-bg-preview]")).to_be_visible()
    submit_and_wait(page)
    expect(page.locator("[data-change-message]")).to_have_text(
        "Done: your new background is ready."
    )
    changed = read_pose(web_stack, pose_id)
    assert changed.background_mode == "upload"
    assert _close(corner_colour(web_stack, changed.image_key), (46, 139, 87))

    # AI prompt, through the fake FLUX server: a suggestion fills the prompt and the counter.
    page.get_by_label("AI prompt").check()
    page.get_by_role("button", name="a lush tropical garden").click()
    expect(page.locator("#prompt")).to_have_value("a lush tropical garden")
    expect(page.locator("[data-counter]")).to_have_text("22/300")
    submit_and_wait(page)
    expect(page.locator("[data-change-message]")).to_have_text(
        "Done: your new background is ready."
    )
    changed = read_pose(web_stack, pose_id)
    assert (changed.background_mode, changed.background_prompt) == (
        "ai_generate",
        "a lush tropical garden",
    )
    [submitted] = fake_flux.requests_to("/v1/", "POST")
    assert "a lush tropical garden" in submitted.json["prompt"]

    assert page.evaluate("() => window.__loaded === true")
    expect(page.locator("[data-credit-balance]")).to_have_text("70")
    assert balance(web_stack.db_url, seller.id) == 70
    assert ledger(web_stack.db_url, seller.id) == [(-10, "background_change")] * 3
    assert seller.errors == []


def test_a_flux_failure_says_the_credits_were_refunded_and_retry_works(
    new_seller: Callable[..., Seller], web_stack: WebStack, fake_flux: FakeBFLServer
) -> None:
    seller = new_seller(credits=100)
    pose_id = add_pose(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/poses/{pose_id}")
    fake_flux.scenario = "error"

    page.get_by_label("AI prompt").check()
    page.locator("#prompt").fill("a quiet library with tall shelves")
    submit_and_wait(page)

    message = page.locator("[data-change-message]")
    expect(message).to_contain_text("The change failed:")
    expect(message).to_contain_text("Your 10 credits were refunded.")
    expect(page.locator("[data-pose-status]")).to_have_text("Failed")
    expect(page.locator("[data-credit-balance]")).to_have_text("100")
    assert ledger(web_stack.db_url, seller.id) == [(-10, "background_change"), (10, "refund")]
    failed = read_pose(web_stack, pose_id)
    assert (failed.status, failed.background_changed) == ("failed", False)
    assert not web_stack.storage.exists(_bg_key(web_stack, pose_id))

    fake_flux.scenario = "ready"
    submit_and_wait(page, "[data-retry]")
    expect(message).to_have_text("Done: your new background is ready.")
    expect(page.locator("[data-credit-balance]")).to_have_text("90")
    assert ledger(web_stack.db_url, seller.id) == [
        (-10, "background_change"),
        (10, "refund"),
        (-10, "background_change"),
    ]
    changed = read_pose(web_stack, pose_id)
    assert (changed.status, changed.background_prompt) == (
        "ready",
        "a quiet library with tall shelves",
    )
    assert seller.errors == []


def test_a_forbidden_word_is_refused_under_the_prompt_and_costs_nothing(
    new_seller: Callable[..., Seller], web_stack: WebStack, fake_flux: FakeBFLServer
) -> None:
    seller = new_seller(credits=100)
    pose_id = add_pose(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/poses/{pose_id}")

    page.get_by_label("AI prompt").check()
    page.locator("#prompt").fill("a beach with a gun on the sand")
    page.locator("[data-change-submit]").click()

    error = page.locator("#prompt-error")
    expect(error).to_have_text("backgroundPrompt contains forbidden keywords: gun")
    expect(page.locator("#prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-working]")).to_be_hidden()
    assert ledger(web_stack.db_url, seller.id) == []
    assert read_pose(web_stack, pose_id).status == "ready"
    assert fake_flux.requests_to("/v1/", "POST") == []


def test_a_second_change_while_one_runs_shows_the_409_and_short_credits_say_how_many(
    new_seller: Callable[..., Seller], web_stack: WebStack, fake_flux: FakeBFLServer
) -> None:
    seller = new_seller(credits=15)
    pose_id = add_pose(web_stack, seller.id)
    first, second = seller.page, seller.context.new_page()
    for page in (first, second):
        page.goto(f"/app/poses/{pose_id}")
    fake_flux.scenario = "pending_then_ready"
    fake_flux.pending_polls = 200  # ~10 s of FLUX "Pending": the first change is still running

    first.get_by_label("AI prompt").check()
    first.locator("#prompt").fill("a snowy mountain cabin")
    first.locator("[data-change-submit]").click()
    expect(first.locator("[data-working]")).to_be_visible()
    expect(first.locator("[data-pose-status]")).to_have_text("Processing")
    second.locator("[data-change-submit]").click()

    refusal = second.locator("[data-change-message]")
    expect(refusal).to_have_text("A background change for this pose is already running")
    expect(first.locator("[data-working]")).to_be_hidden(timeout=CHANGE_SECONDS)
    expect(first.locator("[data-change-message]")).to_have_text(
        "Done: your new background is ready."
    )
    assert ledger(web_stack.db_url, seller.id) == [(-10, "background_change")]

    # 5 credits left: the button says so, and the API's 403 says how many are needed.
    second.reload()
    expect(second.locator("[data-change-submit]")).to_contain_text("10 credits · you have 5")
    second.locator("[data-change-submit]").click()
    expect(second.locator("[data-change-message]")).to_have_text(
        "Not enough credits: this change needs 10 and you have 5."
    )
    assert ledger(web_stack.db_url, seller.id) == [(-10, "background_change")]
    assert balance(web_stack.db_url, seller.id) == 5


def _bg_key(stack: WebStack, pose_id: uuid.UUID) -> str:
    pose = read_pose(stack, pose_id)
    return f"poses/{pose.generation_id}/{pose.id}_bg.png"


def _src_pattern(pose_id: uuid.UUID) -> re.Pattern[str]:
    return re.compile(rf"/files/poses/[0-9a-f-]+/{pose_id}_bg\.png\?v=\d+$")


def _close(
    actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 3
) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
