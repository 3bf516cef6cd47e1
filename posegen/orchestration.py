"""Names and setup of the Prefect-side resources posegen relies on: limits and event names.

Kept in the library (not in flows/) because the API, the CLI and `posegen up` create the same
limits the flows acquire, and tests check the same names.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.utilities.asyncutils import run_coro_as_sync

from posegen.config import get_settings

BACKGROUND_CHANGE_LIMIT = "posegen-background-change"
FLUX_RATE_LIMIT = "posegen-flux"

EVENT_BACKGROUND_COMPLETED = "posegen.background-change.completed"
EVENT_BACKGROUND_FAILED = "posegen.background-change.failed"
# Every posegen event name starts with this; clients see names without it.
EVENT_PREFIX = "posegen."

_limits_ready = False


async def ensure_limits() -> None:
    """Create (or correct) the global concurrency and rate limits; cheap to call again."""
    global _limits_ready
    if _limits_ready:
        return
    settings = get_settings()
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            BACKGROUND_CHANGE_LIMIT, settings.background_change_slots
        )
        await client.upsert_global_concurrency_limit_by_name(
            FLUX_RATE_LIMIT,
            settings.flux_rate_per_minute,
            slot_decay_per_second=settings.flux_rate_per_minute / 60,
        )
    _limits_ready = True


def ensure_limits_sync() -> None:
    run_coro_as_sync(ensure_limits())


def pose_resource(pose_id: object) -> dict[str, str]:
    return {"prefect.resource.id": f"posegen.pose.{pose_id}", "prefect.resource.role": "pose"}


def user_resource_id(user_id: object) -> str:
    """The related resource that marks an event as this user's (GET /events relays by it)."""
    return f"posegen.user.{user_id}"


def user_related(user_id: object) -> dict[str, str]:
    return {"prefect.resource.id": user_resource_id(user_id), "prefect.resource.role": "user"}


EVENT_POSE_REQUEST_STATUS_CHANGED = "posegen.pose-request.status-changed"


def pose_request_resource(request_id: object) -> dict[str, str]:
    return {
        "prefect.resource.id": f"posegen.pose-request.{request_id}",
        "prefect.resource.role": "pose-request",
    }


EVENT_EXPORT_COMPLETED = "posegen.export.completed"
EVENT_EXPORT_FAILED = "posegen.export.failed"


def generation_resource(generation_id: object) -> dict[str, str]:
    return {
        "prefect.resource.id": f"posegen.generation.{generation_id}",
        "prefect.resource.role": "generation",
    }
