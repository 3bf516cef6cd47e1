"""GET /health: can this API reach its database, storage and Prefect API, and is the model there?

No authentication, so load balancers and operators can call it; the body names only which
dependency failed and the error's type, never connection strings or messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from posegen.db.session import get_sessionmaker
from posegen.imaging.model_files import has_model
from posegen.storage import get_storage

router = APIRouter(tags=["health"])
logger = logging.getLogger("posegen.api.health")

_PREFECT_TIMEOUT = 2.0
# Any key will do: asking whether an object exists proves we can reach and read the storage.
_PROBE_KEY = "uploads/health-check"


@router.get(
    "/health",
    responses={200: {"description": "All dependencies reachable"}, 503: {"description": "Not"}},
)
async def health() -> JSONResponse:
    database, storage, prefect, model = await asyncio.gather(
        run_in_threadpool(_check_database),
        run_in_threadpool(_check_storage),
        _check_prefect(),
        run_in_threadpool(_check_model),
    )
    ok = database["ok"] and storage["ok"] and prefect["ok"] and model["ok"]
    body = {
        "status": "ok" if ok else "degraded",
        "database": database,
        "storage": storage,
        "prefect": prefect,
        "model": model,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


def _check_database() -> dict[str, Any]:
    try:
        with get_sessionmaker()() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return _failed("database", exc)
    return {"ok": True}


def _check_storage() -> dict[str, Any]:
    try:
        get_storage().exists(_PROBE_KEY)
    except Exception as exc:
        return _failed("storage", exc)
    return {"ok": True}


def _check_model() -> dict[str, Any]:
    """The segmentation model file: without it every background change would fail in its run.

    Checked here (md5 included) because rembg would otherwise try to download it at the first
    run, which fails on machines without GitHub access long after the user was charged.
    """
    try:
        if has_model():
            return {"ok": True}
    except Exception as exc:
        return _failed("model", exc)
    return {"ok": False, "error": "ModelMissing"}


async def _check_prefect() -> dict[str, Any]:
    url = PREFECT_API_URL.value()
    if not url:
        return {"ok": False, "error": "PREFECT_API_URL is not set"}
    try:
        async with httpx.AsyncClient(timeout=_PREFECT_TIMEOUT) as client:
            response = await client.get(f"{url.rstrip('/')}/health")
            response.raise_for_status()
    except Exception as exc:
        return _failed("prefect", exc)
    return {"ok": True}


def _failed(name: str, exc: Exception) -> dict[str, Any]:
    logger.warning("Health check: %s unavailable: %s", name, exc)
    return {"ok": False, "error": type(exc).__name__}
