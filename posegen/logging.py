"""Structured logs: every line carries the request id and the flow run id, and no credentials.

`configure_logging()` installs one handler on the root logger (JSON lines when
`POSEGEN_LOG_JSON=1`, readable text otherwise); `RequestIdMiddleware` gives each HTTP request
an id (the caller's `X-Request-ID` or a new one) that every line logged for it carries and the
response echoes, so an operator can follow one request from the client through the logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen.config import get_settings

REQUEST_ID_HEADER = "X-Request-ID"

_request_id: ContextVar[str | None] = ContextVar("posegen_request_id", default=None)
# A client-chosen id lands in every log line: accept only what cannot forge or break one.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HANDLER_NAME = "posegen"
# Credentials that must never reach a log line, whoever logged them (us, a library, a traceback).
_SECRETS = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b((?:access_)?token|x-key|api_key)=[^&\s\"']+"), r"\1=[redacted]"),
)
# What every LogRecord has; anything else on a record was passed as `extra=` and is logged too.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "flow_run_id",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}
_TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s run=%(flow_run_id)s] %(message)s"
)


def current_request_id() -> str | None:
    return _request_id.get()


def redact(text: str) -> str:
    """The text with bearer tokens, JWTs and key-like query parameters blanked out."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def configure_logging(stream: TextIO | None = None) -> None:
    """Install posegen's handler on the root logger; calling it again replaces it.

    In JSON mode uvicorn's own loggers are routed to the same handler, so an operator's log
    shipper sees one format. uvicorn's access log is switched off in both modes: the request
    middleware logs each request itself, with the request id uvicorn's line cannot carry.
    """
    settings = get_settings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_JsonFormatter() if settings.log_json else _TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    posegen_logger = logging.getLogger("posegen")
    if posegen_logger.level == logging.NOTSET:
        posegen_logger.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").disabled = True
    # uvicorn logs each WebSocket handshake's path with its query (`/ws?token=…`) through its own
    # handlers, which ours do not format: redact on the logger itself.
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _RedactingFilter) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(_RedactingFilter())
    # httpx logs every request URL at INFO, presigned query strings (signatures) included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.log_json:
        for name in ("uvicorn", "uvicorn.error"):
            uvicorn_logger = logging.getLogger(name)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True


class _ContextFilter(logging.Filter):
    """Stamps each record with the request and flow run it belongs to (or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        record.flow_run_id = _flow_run_id()
        return True


def _flow_run_id() -> str | None:
    # Imported here: prefect.runtime pulls in much of Prefect, and most lines are not in a run.
    from prefect.runtime import flow_run

    return flow_run.get_id()


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message without credentials, whichever handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, `extra=` fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "flow_run_id": getattr(record, "flow_run_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str))


class RequestIdMiddleware:
    """Give every HTTP request an id for its log lines, and echo it in `X-Request-ID`.

    A plain ASGI middleware (not BaseHTTPMiddleware) so streamed responses (SSE) pass through
    untouched. The context variable is not reset afterwards on purpose: each request runs in
    its own task, and the error handler that logs an unexpected exception runs after this
    middleware has returned, yet its line should still carry the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _incoming_request_id(scope: Scope) -> str | None:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", []):
        if name == wanted:
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None
