"""The FastAPI application: every router mounted under the base path, in one place.

`uvicorn posegen.api.app:app` serves the module-level `app`; tests build their own with
`create_app()` after pointing the settings at their database and storage.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from posegen.api.errors import install_error_handlers
from posegen.api.routes import files, generations, health, me, poses, uploads

BASE_PATH = "/api/apps/pose-generator"


def create_app() -> FastAPI:
    app = FastAPI(
        title="posegen",
        version="0.1.0",
        summary="Background change, multi-format export and pose requests for pose images.",
        docs_url="/docs",
    )
    api = APIRouter(prefix=BASE_PATH)
    for module in (health, me, generations, poses, uploads, files):
        api.include_router(module.router)
    app.include_router(api)
    install_error_handlers(app)
    return app


app = create_app()
