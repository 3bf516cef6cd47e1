"""The pages' Jinja environment, asset URLs that change when the file does, and error pages."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

WEB_PREFIX = "/app"
STATIC_PREFIX = f"{WEB_PREFIX}/static"
STATIC_DIR = Path(__file__).parent / "static"
_TEMPLATES_DIR = Path(__file__).parent / "templates"

templates = Jinja2Templates(directory=str(_TEMPLATES_DIR))
# Pages are HTML and nothing else may frame them; scripts and styles come only from us.
PAGE_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data: https:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
}


@cache
def _fingerprint(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/app/static/app.css?v=<hash>`: browsers may cache it, and a new release busts it."""
    return f"{STATIC_PREFIX}/{name}?v={_fingerprint(name)}"


templates.env.globals["static_url"] = static_url


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=PAGE_HEADERS
    )


def is_page_request(request: Request) -> bool:
    """A request for one of the web app's pages (not its static files or the JSON API)."""
    path = request.url.path
    return (path == WEB_PREFIX or path.startswith(f"{WEB_PREFIX}/")) and not path.startswith(
        f"{STATIC_PREFIX}/"
    )


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """The page a browser sees for a refusal: the same message the API would give, in HTML."""
    template = "sign_in.html" if status_code == 401 else "error.html"
    return render(
        request,
        template,
        {"status_code": status_code, "message": message, "viewer": None},
        status_code=status_code,
    )
