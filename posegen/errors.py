"""The error hierarchy: callers catch the level they care about; the API maps each to one status."""

from __future__ import annotations

from typing import Any


class PosegenError(Exception):
    """Base of every error a user or operator may see; `message` is safe to show."""

    status_code = 500

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    @property
    def error_type(self) -> str:
        return type(self).__name__

    def to_body(self) -> dict[str, Any]:
        return {"error": self.error_type, "message": self.message, **self.context}


class ValidationFailed(PosegenError):
    """The input is wrong; nothing was changed."""

    status_code = 400


class Unauthorized(PosegenError):
    status_code = 401


class Forbidden(PosegenError):
    status_code = 403


class InsufficientCredits(PosegenError):
    status_code = 403

    def __init__(self, required: int, balance: int) -> None:
        super().__init__(
            f"Insufficient credits: this needs {required}, you have {balance}.",
            required=required,
            balance=balance,
        )


class NotFound(PosegenError):
    status_code = 404


class Conflict(PosegenError):
    status_code = 409


class RateLimited(PosegenError):
    """Too many requests of one kind from one user; `retry_after` says when the next may come."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int, **context: Any) -> None:
        super().__init__(message, retryAfter=retry_after, **context)
        self.retry_after = retry_after


class ServiceUnavailable(PosegenError):
    """A dependency (FLUX key, Prefect API) is not available; nothing was charged."""

    status_code = 503


class TransientError(PosegenError):
    """Worth retrying: network errors, timeouts, 429 and 5xx from a dependency."""

    status_code = 503


class PermanentError(PosegenError):
    """Retrying cannot help: moderation, bad upstream data, a refused request."""

    status_code = 502
