"""Every HTTP route of the app, read from `app.routes`, with what it takes to call it.

The security sweeps iterate this inventory instead of a hand-written list, so a route added
later is swept (or makes a coverage test fail) without anyone remembering to add it here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI

from posegen.api.deps import get_admin_user, get_current_user
from posegen.api.paths import BASE_PATH
from posegen.web.deps import get_admin_viewer, get_viewer

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the full template, e.g. /api/apps/pose-generator/poses/{pose_id}
    params: tuple[str, ...]
    needs_user: bool
    needs_admin: bool
    needs_session: bool  # a web app page: the browser session's cookie, never a bearer token
    module: str  # where the endpoint is defined, e.g. posegen.api.routes.poses
    takes_body: bool

    @property
    def label(self) -> str:
        """`POST /poses/{pose_id}/background`: short enough for a test id."""
        return f"{self.method} {self.path.removeprefix(BASE_PATH)}"

    @property
    def is_api(self) -> bool:
        """Under the API's base path; the web app's pages are swept in tests/web."""
        return self.path.startswith(f"{BASE_PATH}/")

    def url(self, values: dict[str, str]) -> str:
        return _PARAM.sub(lambda match: values[match.group(1)], self.path)


def inventory(app: FastAPI) -> list[Route]:
    """One entry per (method, path); HEAD is left out (Starlette adds it to every GET)."""
    routes = []
    for route in _flat_routes(app):
        dependant = getattr(route, "dependant", None)
        calls = set(_dependency_calls(dependant)) if dependant is not None else set()
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            routes.append(
                Route(
                    method=method,
                    path=route.path,
                    params=tuple(_PARAM.findall(route.path)),
                    needs_user=get_current_user in calls,
                    needs_admin=bool({get_admin_user, get_admin_viewer} & calls),
                    needs_session=get_viewer in calls,
                    module=getattr(route.endpoint, "__module__", ""),
                    takes_body=bool(dependant is not None and dependant.body_params),
                )
            )
    return routes


def one_per_module(routes: list[Route]) -> list[Route]:
    """The first route of each router module: a sample that still touches every router."""
    first: dict[str, Route] = {}
    for route in routes:
        first.setdefault(route.module, route)
    return list(first.values())


def sample_path_values() -> dict[str, str]:
    """Ids that name nothing: what a route answers for a truly missing resource."""
    return {
        "pose_id": str(uuid.uuid4()),
        "generation_id": str(uuid.uuid4()),
        "request_id": str(uuid.uuid4()),
        "project_id": str(uuid.uuid4()),
        "key": f"uploads/{uuid.uuid4()}/{uuid.uuid4()}.png",
    }


def _flat_routes(app: FastAPI) -> Iterator[Any]:
    """The app's routes with their full paths, on FastAPI before and after 0.150.

    Since 0.150 `app.routes` holds included routers as single entries and
    `fastapi.routing.iter_route_contexts` expands them; before, the routes were copied flat.
    """
    expand: Callable[[Any], Iterator[Any]] | None = getattr(
        fastapi.routing, "iter_route_contexts", None
    )
    yield from expand(app.routes) if expand is not None else app.routes


def _dependency_calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)
