"""The FastAPI application: every router mounted under the base path, in one place.

`uvicorn posegen.api.app:app` serves the module-level `app`; tests build their own with
`create_app()` after pointing the settings at their database and storage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from posegen.api.errors import install_error_handlers
from posegen.api.event_hub import EventHub
from posegen.api.metrics import RequestMetricsMiddleware
from posegen.api.metrics import router as metrics_router
from posegen.api.openapi import install_openapi
from posegen.api.paths import BASE_PATH
from posegen.api.routes import (
    admin_requests,
    events,
    exports,
    files,
    generations,
    health,
    library,
    me,
    poses,
    projects,
    requests,
    sign_in,
    uploads,
)
from posegen.logging import RequestIdMiddleware, configure_logging
from posegen.web import community as web_community
from posegen.web import routes as web
from posegen.web.templating import STATIC_DIR, STATIC_PREFIX


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # The process's one Prefect events subscription (opened by the first listener).
    hub: EventHub | None = getattr(app.state, "event_hub", None)
    if hub is not None:
        await hub.close()


def create_app() -> FastAPI:
    configure_logging()
    # /docs and /redoc serve Swagger UI and ReDoc from a pinned package, not a CDN: they work
    # with no internet (FastAPI's own pages are blank offline).
    app = FastAPIOffline(
        title="posegen",
        version="0.1.0",
        summary="Background change, multi-format export and pose requests for pose images.",
        docs_url="/docs",
        redoc_url="/redoc",
        static_url="/docs/static",
        lifespan=_lifespan,
    )
    api = APIRouter(prefix=BASE_PATH)
    for module in (
        health,
        me,
        projects,
        generations,
        poses,
        uploads,
        files,
        requests,
        admin_requests,
        library,
        events,
        exports,
        sign_in,
    ):
        api.include_router(module.router)
    app.include_router(api)
    # The web app: pages in the same process, calling the same domain (posegen/web).
    app.include_router(web.router)
    app.include_router(web_community.router)
    app.include_router(web.root)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="web-static")
    # At the root, where Prometheus scrapes by default; not part of the client API.
    app.include_router(metrics_router)
    # The last added runs first: the request id exists before the request is counted and logged.
    app.add_middleware(RequestMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    install_openapi(app)
    return app


app = create_app()
