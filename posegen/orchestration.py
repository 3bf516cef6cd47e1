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


def user_related(user_id: object) -> dict[str, str]:
    return {"prefect.resource.id": f"posegen.user.{user_id}", "prefect.resource.role": "user"}
