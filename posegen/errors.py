"""The error hierarchy: callers catch the level they care about; the API maps each to one status.

Our exception classes, grouped by what callers catch (status code; retried by a task or not):

* PosegenError               base; `message` is safe to show                     500
  + ValidationFailed         the input is wrong; nothing changed                 400
    - RemoteImageRefused     (posegen.remote) an upload URL failed the SSRF guard
  + Unauthorized             no or invalid credentials                           401
  + Forbidden                authenticated, not allowed                          403
  + InsufficientCredits      `required`, `balance`                               403
  + NotFound                 missing or not yours (never says which)             404
  + Conflict                 illegal transition, duplicate, already running      409
  + RateLimited              `retry_after`                                       429
  + ServiceUnavailable       a dependency is not configured; nothing charged     503
  + TransientError           worth retrying: network, timeout, 429/5xx upstream  503  retryable
    - FluxTransientError     (posegen.flux)
    - RemoteImageUnavailable (posegen.remote)
  + PermanentError           retrying cannot help: moderation, bad upstream data 502
    - FluxModerated, FluxFailed (posegen.flux; both also FluxError)
    - UnsupportedModel       (posegen.imaging.convert_selfie)

`retryable` is the one answer to "may a retry help?": task retry conditions call
`is_retryable`, which also counts network trouble from libraries (OSError, TimeoutError).
"""

from __future__ import annotations

from typing import Any


class PosegenError(Exception):
    """Base of every error a user or operator may see; `message` is safe to show."""

    status_code = 500
    # Whether running the same step again may succeed; only transient trouble says yes.
    retryable = False

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
    retryable = True


class PermanentError(PosegenError):
    """Retrying cannot help: moderation, bad upstream data, a refused request."""

    status_code = 502


def is_retryable(error: object, *, unforeseen: bool) -> bool:
    """May a retry help? Our errors say so themselves; OSError and TimeoutError are network or
    storage trouble; for any other exception the caller's policy (`unforeseen`) decides."""
    if isinstance(error, PosegenError):
        return error.retryable
    if isinstance(error, OSError | TimeoutError):
        return True
    return unforeseen
