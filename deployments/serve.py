"""Serve every posegen deployment from one process (what `make run` starts).

Background changes, which users wait for, run in a pool of warm processes that loaded the
model once (`posegen.warm_pool`, `POSEGEN_WARM_WORKERS`, docs/ARCHITECTURE.md). Every other
flow run starts in a fresh subprocess of Prefect's runner. Either way a crash or a kill of one
run cannot take the others down; the hooks and the ledger take care of its credits.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.background_change import background_change
from flows.export import multi_format_export
from flows.nightly_exports import nightly_exports
from flows.pose_request_stats import pose_request_stats
from flows.refund_reconciler import refund_reconciler
from posegen.config import get_settings
from posegen.orchestration import ensure_limits_sync
from posegen.warm_pool import WarmPool


def deployment_name(full_name: str) -> str:
    """`flow-name/deployment-name` → the deployment part (settings name the full form)."""
    return full_name.split("/", 1)[1]


def build_deployments() -> list[RunnerDeployment]:
    settings = get_settings()
    return [
        background_change.to_deployment(
            name=deployment_name(settings.deployment_background_change),
            description="Change one pose's background (AI prompt, solid colour or upload).",
            tags=["posegen", "background-change"],
        ),
        multi_format_export.to_deployment(
            name=deployment_name(settings.deployment_multi_format_export),
            description="Export a generation's poses to platform formats, with a ZIP.",
            tags=["posegen", "export"],
        ),
        nightly_exports.to_deployment(
            name=deployment_name(settings.deployment_nightly_exports),
            description="Export every pose changed since the last successful nightly run.",
            tags=["posegen", "export"],
            schedule=Cron(
                settings.nightly_exports_cron, timezone=settings.nightly_exports_timezone
            ),
            # One night at a time: two overlapping runs would export the same window twice.
            concurrency_limit=1,
        ),
        refund_reconciler.to_deployment(
            name="refund-reconciler",
            description="Refund charges whose background-change run died without refunding.",
            tags=["posegen", "credits"],
            interval=300,
            # One pass covers every open charge: a second one queued behind it (a burst of
            # failures triggering the automation) would only take runner slots from changes.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        pose_request_stats.to_deployment(
            name="pose-request-stats",
            description="Hourly pose-request statistics: a snapshot row and two artifacts.",
            tags=["posegen", "pose-requests"],
            cron="0 * * * *",
        ),
    ]


def main() -> None:
    settings = get_settings()
    ensure_limits_sync()
    deployments = build_deployments()
    pool = None
    if settings.warm_workers > 0:
        pool = WarmPool(
            background_change,
            deployments.pop(0),
            flow_path="flows.background_change:background_change",
            warm_up="posegen.imaging.warm:warm_up",
            size=settings.warm_workers,
            poll_seconds=settings.warm_poll_seconds,
        )
        pool.start()
    try:
        serve(*deployments, limit=settings.runner_limit)
    finally:
        if pool is not None:
            pool.stop()


if __name__ == "__main__":
    main()
