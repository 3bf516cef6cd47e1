"""The web app's pages: sign-in and sign-out, generations, one generation, one pose.

Pages read through the domain, exactly as the API routes do, and hand the browser the same
JSON shapes the API answers with (`schemas.*`), so the page's script talks to one contract:
everything it does afterwards (uploads, changes, exports) goes to the API routes with the
session cookie and the page's CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from posegen.api import schemas
from posegen.api.deps import SessionDep, StorageDep, parse_id
from posegen.api.pagination import PageParams, paginated
from posegen.api.routes.exports import ExportFormatOut
from posegen.config import get_settings
from posegen.domain import exports as export_domain
from posegen.domain.background import cost_for
from posegen.domain.export_charges import cost_per_file
from posegen.domain.exports import (
    CUSTOM_MAX_SIDE,
    CUSTOM_MIN_SIDE,
    FORMATS,
    Fill,
    resolve_format,
)
from posegen.domain.poses import get_owned_generation, get_owned_pose, list_generations
from posegen.domain.previews import has_preview, preview_jpeg
from posegen.domain.sign_in import (
    SESSION_COOKIE,
    csrf_matches,
    end_session,
    redeem_login_link,
)
from posegen.errors import Conflict, Forbidden
from posegen.web.deps import ViewerDep
from posegen.web.templating import WEB_PREFIX, render

router = APIRouter(prefix=WEB_PREFIX, include_in_schema=False)
root = APIRouter(include_in_schema=False)

_PAGE_SIZE = 12
_PROMPT_SUGGESTIONS = (
    "a sunny beach at golden hour",
    "a minimalist white studio with soft shadows",
    "a cosy café with warm bokeh lights",
    "a lush tropical garden",
    "a modern city street at dusk",
    "pastel pink paper backdrop",
)
_COLOUR_SWATCHES = ("#FFFFFF", "#F5F0E8", "#1E90FF", "#FFB6C1", "#2E8B57", "#111827")


@root.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(WEB_PREFIX, status_code=307)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, signed_out: bool = False) -> HTMLResponse:
    message = "You are signed out." if signed_out else None
    return render(request, "sign_in.html", {"viewer": None, "message": message})


@router.get("/sign-in/{code}")
def sign_in(code: str, request: Request, session: SessionDep) -> Response:
    """Redeem a one-time link: set the session cookie and leave the code's URL at once."""
    started = redeem_login_link(session, code)
    response = RedirectResponse(WEB_PREFIX, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        started.secret,
        expires=started.expires_at,
        path="/",
        httponly=True,
        samesite="lax",
        secure=get_settings().cookie_secure,
    )
    # The code is spent, but keep it out of the next page's Referer all the same.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/sign-out")
def sign_out(
    viewer: ViewerDep, session: SessionDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    if not csrf_matches(viewer.session, csrf_token):
        raise Forbidden("This request needs the page's CSRF token: reload the page and try again.")
    end_session(session, viewer.session)
    response = RedirectResponse(f"{WEB_PREFIX}/sign-in?signed_out=true", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("", response_class=HTMLResponse)
def generations_page(
    request: Request, viewer: ViewerDep, session: SessionDep, storage: StorageDep, page: int = 1
) -> HTMLResponse:
    params = PageParams(page=max(1, min(page, 1_000_000)), limit=_PAGE_SIZE)
    rows, total = list_generations(
        session, viewer.user.id, offset=params.offset, limit=params.limit
    )
    listing = paginated([schemas.GenerationSummary.of(r, storage) for r in rows], params, total)
    return render(
        request,
        "generations.html",
        _context(viewer, title="Your generations", listing=listing),
    )


@router.get("/generations/{generation_id}", response_class=HTMLResponse)
def generation_page(
    generation_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    storage: StorageDep,
) -> HTMLResponse:
    generation = get_owned_generation(
        session, viewer.user.id, parse_id(generation_id, "Generation not found")
    )
    shown = schemas.GenerationOut.of(generation, storage)
    zip_key = export_domain.zip_key(generation.id)
    data = {
        "generation": _json(shown),
        "formats": [_json(ExportFormatOut.of(fmt)) for fmt in FORMATS.values()],
        "custom": {"minSide": CUSTOM_MIN_SIDE, "maxSide": CUSTOM_MAX_SIDE},
        "aiFill": {
            "fill": Fill.AI_EXPAND.value,
            "costPerFile": cost_per_file(viewer.user),
            "available": get_settings().flux_configured,
        },
        "zipUrl": storage.client_url(zip_key) if storage.exists(zip_key) else None,
    }
    cover = generation.poses[0] if generation.poses else None
    previews = cover is not None and has_preview(cover)
    return render(
        request,
        "generation.html",
        _context(
            viewer,
            title="Generation",
            generation=shown,
            page_data=data,
            previews=previews,
            preview_version=int(cover.updated_at.timestamp()) if cover else 0,
        ),
    )


@router.get("/poses/{pose_id}/previews/{format_name}.jpg")
async def format_preview(
    pose_id: str, format_name: str, viewer: ViewerDep, session: SessionDep, storage: StorageDep
) -> Response:
    """This pose in one format, small, rendered by the export code (the selector's cards)."""
    pose = get_owned_pose(session, viewer.user.id, parse_id(pose_id, "Pose not found"))
    fmt = resolve_format(format_name)
    data = await run_in_threadpool(preview_jpeg, storage, pose, fmt)
    if data is None:
        raise Conflict("No preview yet: it appears once this pose has been exported or changed.")
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.get("/poses/{pose_id}", response_class=HTMLResponse)
def pose_page(
    pose_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    storage: StorageDep,
) -> HTMLResponse:
    pose = get_owned_pose(session, viewer.user.id, parse_id(pose_id, "Pose not found"))
    shown = schemas.PoseOut.of(pose, storage)
    data = {
        "pose": _json(shown),
        "size": [pose.width, pose.height],
        "cost": cost_for(viewer.user),
        "unlimited": viewer.user.enterprise_unlimited,
        "aiAvailable": get_settings().flux_configured,
    }
    return render(
        request,
        "pose.html",
        _context(
            viewer,
            title="Change background",
            pose=shown,
            cost=data["cost"],
            suggestions=_PROMPT_SUGGESTIONS,
            swatches=_COLOUR_SWATCHES,
            ai_available=data["aiAvailable"],
            page_data=data,
        ),
    )


def _context(viewer: Any, **values: Any) -> dict[str, Any]:
    return {"viewer": viewer, **values}


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)
