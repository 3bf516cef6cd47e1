"""The community pages: pose requests (the form, my requests, the board), a library pose, and
the admin desk (queue, library, statistics).

Like the other pages they read through the domain and hand the script the API's own JSON
shapes; every change (submit, vote, delete, approve, …) goes to the API routes with the
session cookie and the CSRF token. Lists are rendered here, so paging, filters and sorting
work without the script; the script swaps in the next list without a reload.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from posegen.api import community_schemas as schemas
from posegen.api.deps import SessionDep, StorageDep, parse_id
from posegen.api.pagination import PageParams, paginated
from posegen.db.community import (
    DESCRIPTION_MAX,
    OPEN_STATUSES,
    POSE_NAME_MAX,
    PoseRequest,
    RequestStatus,
)
from posegen.db.models import User
from posegen.domain import pose_library, request_stats
from posegen.domain import pose_requests as domain
from posegen.domain.pose_requests import TRANSITIONS, USE_CASE_MAX, RequestSort
from posegen.web import charts
from posegen.web.deps import AdminViewerDep, ViewerDep
from posegen.web.templating import WEB_PREFIX, render

router = APIRouter(prefix=WEB_PREFIX, include_in_schema=False)

_PAGE_SIZE = 9
_QUEUE_PAGE_SIZE = 20
_LIBRARY_CHOICES = 100
_SNAPSHOT_DAYS = 7
STATUS_LABELS = {
    RequestStatus.PENDING: "Pending",
    RequestStatus.APPROVED: "Approved",
    RequestStatus.IN_PROGRESS: "In progress",
    RequestStatus.COMPLETED: "Completed",
    RequestStatus.REJECTED: "Rejected",
}
SORT_LABELS = {
    RequestSort.NEWEST: "Newest",
    RequestSort.OLDEST: "Oldest",
    RequestSort.VOTES: "Most votes",
}
_QUEUE_SORTS = {RequestSort.PENDING_FIRST: "Pending first, most votes", **SORT_LABELS}
_VIEWS = ("mine", "board")

Search = Annotated[str | None, Query(alias="q", max_length=100)]


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    view: str = "mine",
    status: RequestStatus | None = None,
    search: Search = None,
    sort: RequestSort | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    view = view if view in _VIEWS else "mine"
    chosen = sort or (RequestSort.VOTES if view == "board" else RequestSort.NEWEST)
    if chosen == RequestSort.PENDING_FIRST:
        chosen = RequestSort.VOTES
    params = PageParams(page=page, limit=_PAGE_SIZE)
    lister = domain.list_board_requests if view == "board" else _own_requests
    rows, total = lister(
        session,
        viewer.user,
        status=status,
        search=search,
        sort=chosen,
        offset=params.offset,
        limit=params.limit,
    )
    listing = paginated(schemas.pose_requests(session, viewer.user, rows), params, total)
    categories = pose_library.list_categories(session)
    filters = {"view": view, "status": status or "", "q": search or "", "sort": chosen}
    return render(
        request,
        "requests.html",
        {
            "viewer": viewer,
            "nav": "requests",
            "title": "Pose requests",
            "listing": listing,
            "filters": filters,
            "categories": categories,
            "statuses": STATUS_LABELS,
            "sorts": SORT_LABELS,
            "votable": {s.value for s in OPEN_STATUSES},
            "limits": {
                "name": POSE_NAME_MAX,
                "description": DESCRIPTION_MAX,
                "useCase": USE_CASE_MAX,
            },
            "page_url": _page_url("/requests", filters),
            "page_data": {
                "limits": {
                    "poseName": POSE_NAME_MAX,
                    "description": DESCRIPTION_MAX,
                    "useCase": USE_CASE_MAX,
                },
                "statusLabels": {s.value: label for s, label in STATUS_LABELS.items()},
            },
        },
    )


def _own_requests(session: Session, user: User, **query: Any) -> tuple[list[PoseRequest], int]:
    return domain.list_own_requests(session, user.id, **query)


@router.get("/library/{pose_id}", response_class=HTMLResponse)
def library_pose_page(
    pose_id: str, request: Request, viewer: ViewerDep, session: SessionDep, storage: StorageDep
) -> HTMLResponse:
    item = pose_library.get_library_item(
        session, parse_id(pose_id, "Pose not found in the library")
    )
    (shown,) = schemas.library_items(session, [item], storage)
    return render(
        request,
        "library_pose.html",
        {"viewer": viewer, "nav": "requests", "title": shown.name, "pose": shown},
    )


# -- the admin desk ------------------------------------------------------------------------------


@router.get("/admin/requests", response_class=HTMLResponse)
def admin_queue_page(
    request: Request,
    viewer: AdminViewerDep,
    session: SessionDep,
    storage: StorageDep,
    status: RequestStatus | None = None,
    category_id: Annotated[uuid.UUID | None, Query(alias="categoryId")] = None,
    user_id: Annotated[uuid.UUID | None, Query(alias="userId")] = None,
    search: Search = None,
    sort: RequestSort = RequestSort.PENDING_FIRST,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    params = PageParams(page=page, limit=_QUEUE_PAGE_SIZE)
    rows, total = domain.list_all_requests(
        session,
        status=status,
        category_id=category_id,
        user_id=user_id,
        search=search,
        sort=sort,
        offset=params.offset,
        limit=params.limit,
    )
    listing = paginated(schemas.admin_pose_requests(session, viewer.user, rows), params, total)
    categories = pose_library.list_categories(session)
    library, _ = pose_library.list_library(
        session, category_id=None, search=None, offset=0, limit=_LIBRARY_CHOICES
    )
    filters = {
        "status": status or "",
        "categoryId": category_id or "",
        "userId": user_id or "",
        "q": search or "",
        "sort": sort,
    }
    return render(
        request,
        "admin_queue.html",
        {
            "viewer": viewer,
            "nav": "admin",
            "admin_nav": "queue",
            "title": "Request queue",
            "listing": listing,
            "filters": filters,
            "categories": categories,
            "statuses": STATUS_LABELS,
            "sorts": _QUEUE_SORTS,
            "page_url": _page_url("/admin/requests", filters),
            "page_data": {
                "transitions": {s.value: sorted(TRANSITIONS[s]) for s in TRANSITIONS},
                "statusLabels": {s.value: label for s, label in STATUS_LABELS.items()},
                "library": [_json(i) for i in schemas.library_items(session, library, storage)],
                "categories": [_json(schemas.CategoryOut.of(c)) for c in categories],
            },
        },
    )


@router.get("/admin/library", response_class=HTMLResponse)
def admin_library_page(
    request: Request,
    viewer: AdminViewerDep,
    session: SessionDep,
    storage: StorageDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    params = PageParams(page=page, limit=24)
    items, total = pose_library.list_library(
        session, category_id=None, search=None, offset=params.offset, limit=params.limit
    )
    listing = paginated(schemas.library_items(session, items, storage), params, total)
    return render(
        request,
        "admin_library.html",
        {
            "viewer": viewer,
            "nav": "admin",
            "admin_nav": "library",
            "title": "Pose library",
            "listing": listing,
            "categories": pose_library.list_categories(session),
            "page_data": {},
        },
    )


@router.get("/admin/stats", response_class=HTMLResponse)
def admin_stats_page(request: Request, viewer: AdminViewerDep, session: SessionDep) -> HTMLResponse:
    live = request_stats.live_stats(session)
    snapshots, _ = request_stats.list_snapshots(
        session, days=_SNAPSHOT_DAYS, offset=0, limit=24 * _SNAPSHOT_DAYS
    )
    history = list(reversed(snapshots))  # oldest first, as a time axis reads
    latest = history[-1].stats if history else None
    labels = {s.value: label for s, label in STATUS_LABELS.items()}
    return render(
        request,
        "admin_stats.html",
        {
            "viewer": viewer,
            "nav": "admin",
            "admin_nav": "stats",
            "title": "Request statistics",
            "live": live,
            "labels": labels,
            "status_bars": charts.bars(
                [(labels[s], n) for s, n in live["byStatus"].items()],
                keys=list(live["byStatus"]),
            ),
            "over_time": charts.lines(
                [s.created_at for s in history],
                {label: _status_series(history, status) for status, label in labels.items()},
            ),
            "latest": latest,
            "latest_at": history[-1].created_at if history else None,
            "snapshot_count": len(history),
            "top_bars": charts.bars(
                [(r["poseName"], r["votesCount"]) for r in (latest or {}).get("topVoted", [])[:10]]
            ),
            "trending_bars": charts.bars(
                [(r["poseName"], r["votes7d"]) for r in (latest or {}).get("trending7d", [])[:10]]
            ),
        },
    )


def _status_series(snapshots: list[Any], status: str) -> list[int]:
    return [int(snapshot.stats.get("byStatus", {}).get(status, 0)) for snapshot in snapshots]


def _page_url(path: str, filters: dict[str, Any]) -> str:
    """This list's address with every filter but the page (the pager adds `page=`)."""
    query = urlencode({k: str(v) for k, v in filters.items() if v not in ("", None)})
    return f"{WEB_PREFIX}{path}?{query}" if query else f"{WEB_PREFIX}{path}?"


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)
