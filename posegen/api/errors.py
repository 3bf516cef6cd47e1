"""The API's error responses: every failure becomes `{"error", "message", ...context}` here.

Routes and the domain raise; only this module decides status codes and bodies, so clients see
one shape whether the problem was ours (PosegenError), the request's (validation) or routing's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from posegen.errors import PosegenError, RateLimited, Unauthorized
from posegen.web.templating import error_page, is_page_request

logger = logging.getLogger("posegen.api")

# Where a problem was found is not part of the field name a client knows (`backgroundColor`).
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PosegenError, _posegen_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


async def _posegen_error(request: Request, exc: PosegenError) -> Response:
    if is_page_request(request):
        return error_page(request, exc.status_code, exc.message)
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=_headers(exc))


def _headers(exc: PosegenError) -> dict[str, str] | None:
    # RFC 6750: a 401 for a bearer-protected resource names the scheme the client should use.
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    # RFC 9110: clients and proxies honour Retry-After without reading our body.
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    return None


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400, not FastAPI's 422: the design promises 400 for every invalid request."""
    details = [_problem(error) for error in exc.errors()]
    first = details[0] if details else {"field": None, "message": "The request is not valid."}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    body = {"error": "ValidationError", "message": message, "details": details}
    return JSONResponse(body, status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown routes (404), wrong methods (405) and Starlette's own refusals, in our shape."""
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    error = "".join(word.capitalize() for word in phrase.replace("-", " ").split())
    message = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else phrase
    if is_page_request(request) and exc.status_code >= 400:
        return error_page(request, exc.status_code, message)
    body = {"error": error, "message": message}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug or an outage we did not map: log everything, show nothing internal."""
    logger.exception("Unhandled error on %s %s", request.method, request.url.path)
    if is_page_request(request):
        return error_page(request, 500, "Something went wrong on our side. Try again in a minute.")
    body = {"error": "InternalError", "message": "Something went wrong on our side."}
    return JSONResponse(body, status_code=500)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as `{field, message}`, with the field spelled as the client sent it."""
    if error.get("type") == "json_invalid":
        # Its location is a character offset, not a field.
        return {"field": None, "message": "The request body is not valid JSON."}
    return {"field": _field_name(error.get("loc", ())), "message": _clean(str(error["msg"]))}


def _field_name(loc: Sequence[Any]) -> str | None:
    parts = [str(part) for part in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


def _clean(message: str) -> str:
    for prefix in _PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message
