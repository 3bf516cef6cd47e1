"""ExportFormatSelector and ExportDownloader against the live stack: choose, export, preview,
download one file or the ZIP, render one again, and the path for formats not rendered yet."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, Route, expect

from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain.poses import import_generation
from tests.api.conftest import balance, ledger
from tests.web.conftest import (
    Seller,
    WebStack,
    check_accessibility,
    sample_photo,
    screenshot,
    zip_names,
)

EXPORT_SECONDS = 180_000  # ms: two poses, a mask each, on a busy two-core machine


def add_generation(stack: WebStack, user_id: uuid.UUID) -> tuple[uuid.UUID, list[uuid.UUID]]:
    photos = [sample_photo(name).read_bytes() for name in ("astronaut.jpg", "cameraman.jpg")]
    with session_scope(stack.db_url) as session:
        generation = import_generation(session, stack.storage, user_id, photos)
        return generation.id, [pose.id for pose in generation.poses]


def export_formats(stack: WebStack, pose_id: uuid.UUID) -> dict[str, str]:
    with session_scope(stack.db_url) as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        return dict(pose.export_formats or {})


def choose(page: Page, display_name: str) -> None:
    page.locator(".format-card", has_text=display_name).locator("input").check()


def wait_for_export(page: Page) -> None:
    expect(page.locator("[data-export-progress]")).to_be_visible()
    expect(page.locator("[data-export-progress]")).to_be_hidden(timeout=EXPORT_SECONDS)
    expect(page.locator("[data-export-message]")).to_have_text(
        "Export finished: your files are ready below."
    )


def download_zip(page: Page) -> list[str]:
    with page.expect_download() as download:
        page.get_by_role("button", name="Download selected formats as ZIP").click()
    path = download.value.path()
    assert download.value.suggested_filename.startswith("poses-")
    return zip_names(Path(path).read_bytes())


def test_export_three_formats_download_the_zip_and_regenerate_one(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path
) -> None:
    seller = new_seller()
    generation_id, pose_ids = add_generation(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/generations/{generation_id}")
    summary = page.locator("[data-export-summary]")
    expect(summary).to_have_text("Choose formats to export.")
    check_accessibility(page, axe_script)

    choose(page, "Instagram Story")
    choose(page, "Shopee Product")
    page.get_by_label("Width").fill("1200")
    page.get_by_label("Height").fill("628")
    page.get_by_role("button", name="Add size").click()
    expect(summary).to_have_text("3 formats × 2 poses = 6 files")  # noqa: RUF001
    page.get_by_role("button", name="Export", exact=True).click()
    wait_for_export(page)
    # Progress came from the event stream too: one note per pose as the run finished it.
    expect(page.locator("[data-export-selector]")).to_have_attribute("data-poses-rendered", "2/2")

    chips = page.locator("[data-download-table] .file-chip")
    expect(chips).to_have_count(6)
    wanted = {"instagram_story", "shopee_product", "custom:1200x628"}
    for pose_id in pose_ids:
        files = export_formats(web_stack, pose_id)
        assert set(files) == wanted
        assert all(web_stack.storage.exists(key) for key in files.values())
    expected = sorted(
        f"{pose_id}/pose-{pose_id}-{slug}"
        for pose_id in pose_ids
        for slug in ("instagram_story.jpg", "shopee_product.jpg", "custom-1200x628.jpg")
    )
    assert download_zip(page) == expected
    check_accessibility(page, axe_script)

    # Preview before download, then one file downloaded on its own.
    page.get_by_role("button", name="Preview Instagram Story of pose 1").click()
    dialog = page.locator("[data-preview]")
    expect(dialog).to_be_visible()
    expect(dialog.locator("img")).to_have_js_property("complete", True)
    assert dialog.locator("img").evaluate("img => img.naturalHeight") == 1920
    check_accessibility(page, axe_script)
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    with page.expect_download() as single:
        page.get_by_role("link", name="Download Shopee Product of pose 2").click()
    assert Path(single.value.path()).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG

    # Regenerate one format: that file is rendered again, the others are left alone.
    files = export_formats(web_stack, pose_ids[0])
    story = web_stack.storage_dir / files["instagram_story"]
    shopee = web_stack.storage_dir / files["shopee_product"]
    before = (story.stat().st_mtime_ns, shopee.stat().st_mtime_ns)
    page.get_by_role("button", name="Regenerate Shopee Product of pose 1").click()
    expect(page.locator("[data-toasts]")).to_contain_text(
        "Shopee Product of pose 1 rendered again.", timeout=60_000
    )
    assert story.stat().st_mtime_ns == before[0]
    assert shopee.stat().st_mtime_ns > before[1]

    # Exported, the poses have masks: the format cards now show the export code's own render.
    page.reload()
    story = page.locator(".format-card", has_text="Instagram Story").locator("img")
    expect(story).to_have_attribute("src", re.compile(r"/previews/instagram_story\.jpg\?v=\d+$"))
    expect(story).to_have_js_property("complete", True)
    assert story.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [144, 256]
    page.wait_for_function(
        "() => [...document.querySelectorAll('.frame img')].every(i => i.complete)"
    )
    screenshot(page, "exports")
    assert seller.errors == []


def test_formats_not_rendered_yet_are_offered_for_export_then_the_zip_downloads(
    new_seller: Callable[..., Seller], web_stack: WebStack
) -> None:
    seller = new_seller()
    generation_id, pose_ids = add_generation(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/generations/{generation_id}")
    choose(page, "Instagram Feed")
    page.get_by_role("button", name="Export", exact=True).click()
    wait_for_export(page)

    choose(page, "Tokopedia Product")
    page.get_by_role("button", name="Download selected formats as ZIP").click()
    message = page.locator("[data-zip-message]")
    expect(message).to_contain_text("Some requested formats are not rendered yet")
    expect(message).to_contain_text("Not rendered yet: Tokopedia Product for 2 poses.")
    assert all("tokopedia_product" not in export_formats(web_stack, p) for p in pose_ids)

    page.get_by_role("button", name="Export the missing files").click()
    wait_for_export(page)
    assert download_zip(page) == sorted(
        f"{pose_id}/pose-{pose_id}-{slug}.jpg"
        for pose_id in pose_ids
        for slug in ("instagram_feed", "tokopedia_product")
    )
    assert seller.errors == []


def test_ai_expand_is_offered_with_its_cost_and_charges_per_filled_file(
    new_seller: Callable[..., Seller], web_stack: WebStack, axe_script: Path
) -> None:
    """The selector offers AI expand with its price; choosing it shows what it may cost, the
    run charges one fee per file FLUX filled (both square photos in a 9:16 story) and the
    files arrive like any export's."""
    seller = new_seller(credits=100)
    generation_id, pose_ids = add_generation(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/generations/{generation_id}")
    option = page.get_by_label(re.compile(r"AI expand · 10 credits per file AI fills"))
    expect(option).to_be_enabled()
    choose(page, "Instagram Story")
    summary = page.locator("[data-export-summary]")
    expect(summary).to_have_text("1 format × 2 poses = 2 files")  # noqa: RUF001
    option.check()
    expect(summary).to_have_text(
        "1 format × 2 poses = 2 files · AI expand: up to 20 credits (10 per file AI fills)"  # noqa: RUF001
    )
    check_accessibility(page, axe_script)
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("[data-export-progress-text]")).to_contain_text(
        "20 credits for 2 AI-filled files (refunded if it fails)."
    )
    wait_for_export(page)
    for pose_id in pose_ids:
        assert "instagram_story" in export_formats(web_stack, pose_id)
    assert balance(web_stack.db_url, seller.id) == 80
    assert seller.errors == []


def test_an_export_the_seller_cannot_pay_for_is_refused_where_they_pressed_export(
    new_seller: Callable[..., Seller], web_stack: WebStack
) -> None:
    """Progress shows from the click, before the API answers; its refusal then replaces it
    beside the button, the button works again, and nothing was charged, written or rendered."""
    seller = new_seller(credits=15)
    generation_id, pose_ids = add_generation(web_stack, seller.id)
    page = seller.page
    page.goto(f"/app/generations/{generation_id}")
    choose(page, "Instagram Story")
    page.get_by_label(re.compile(r"AI expand · 10 credits per file AI fills")).check()
    start = page.get_by_role("button", name="Export", exact=True)
    held: list[Route] = []
    page.route("**/generations/*/exports", lambda route: held.append(route))
    start.click()
    # While the API has not answered, the seller already sees the export under way.
    expect(page.locator("[data-export-progress-text]")).to_have_text("Starting the export…")
    expect(start).to_be_disabled()
    assert len(held) == 1
    held[0].continue_()

    message = page.locator("[data-export-message]")
    expect(message).to_have_text("Insufficient credits: this needs 20, you have 15.")
    expect(message).to_have_class(re.compile(r"notice-error"))
    expect(page.locator("[data-export-progress]")).to_be_hidden()
    expect(start).to_be_enabled()
    assert balance(web_stack.db_url, seller.id) == 15
    assert ledger(web_stack.db_url, seller.id) == []
    assert all(export_formats(web_stack, pose_id) == {} for pose_id in pose_ids)
    assert seller.errors == []
