"""The FastAPI application: every router mounted under the base path, in one place.

`uvicorn posegen.api.app:app` serves the module-level `app`; tests build their own with
`create_app()` after pointing the settings at their database and storage.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from posegen.api.errors import install_error_handlers
from posegen.api.metrics import RequestMetricsMiddleware
from posegen.api.metrics import router as metrics_router
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
    requests,
    uploads,
)
from posegen.logging import RequestIdMiddleware, configure_logging


def create_app() -> FastAPI:
    configure_logging()
    app = FastAPI(
        title="posegen",
        version="0.1.0",
        summary="Background change, multi-format export and pose requests for pose images.",
        docs_url="/docs",
    )
    api = APIRouter(prefix=BASE_PATH)
    for module in (
        health,
        me,
        generations,
        poses,
        uploads,
        files,
        requests,
        admin_requests,
        library,
        events,
        exports,
    ):
        api.include_router(module.router)
    app.include_router(api)
    # At the root, where Prometheus scrapes by default; not part of the client API.
    app.include_router(metrics_router)
    # The last added runs first: the request id exists before the request is counted and logged.
    app.add_middleware(RequestMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    return app


app = create_app()
