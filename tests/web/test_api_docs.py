"""/docs and /redoc work with no internet: a browser that may reach only the API lists the
operations (Swagger UI and ReDoc come from a pinned package, not a CDN)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Route, expect

from tests.web.conftest import WebStack

pytestmark = pytest.mark.slow


@pytest.fixture
def offline(browser: Browser, web_stack: WebStack) -> tuple[BrowserContext, list[str]]:
    """A browser context whose every request off the API's host is refused (and recorded)."""
    context = browser.new_context(base_url=web_stack.base_url)
    api_host = urlsplit(web_stack.base_url).netloc
    refused: list[str] = []

    def only_the_api(route: Route) -> None:
        if urlsplit(route.request.url).netloc == api_host:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_api)
    return context, refused


def test_swagger_ui_lists_the_operations_offline(
    offline: tuple[BrowserContext, list[str]],
) -> None:
    context, refused = offline
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto("/docs")

    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=15_000)
    assert operations.count() > 30
    expect(
        page.locator(".opblock-summary-path", has_text="/api/apps/pose-generator/me").first
    ).to_be_visible()
    mark_completed = page.locator(".opblock-summary-path", has_text="/mark-completed")
    expect(mark_completed.first).to_be_visible()
    assert (refused, errors) == ([], [])
    context.close()


def test_redoc_renders_offline(offline: tuple[BrowserContext, list[str]]) -> None:
    context, refused = offline
    page = context.new_page()

    page.goto("/redoc")

    expect(page.get_by_text("/api/apps/pose-generator/me").first).to_be_attached(timeout=20_000)
    # ReDoc's "powered by" badge is its one outside reference; the document renders without it.
    assert [url for url in refused if not url.endswith("/logo-mini.svg")] == []
    context.close()
