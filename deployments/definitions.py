"""Every posegen deployment, defined once: name, entrypoint, schedule, concurrency, parameters.

`deployments/serve.py` serves these; `prefect.yaml` (read by `prefect deploy --all`, which
cannot import Python) states the same, and tests/deployments/test_definitions.py fails when the
two differ. Names come from settings (`POSEGEN_DEPLOYMENT_*`, `flow/deployment` form) because the
API, the stack and the automations look deployments up by them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow
from prefect.schedules import Cron, Interval, Schedule

from posegen.config import Settings, get_settings


@dataclass(frozen=True)
class DeploymentDefinition:
    full_name: str  # `flow-name/deployment-name`, as settings and the Prefect API name it
    flow_path: str  # `module:function`, importable from the project root
    description: str
    tags: tuple[str, ...]
    schedule: Schedule | None = None
    concurrency_limit: int | None = None
    # With a limit: what happens to a run that finds every slot taken (Prefect's default enqueues).
    cancel_new: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    @property
    def entrypoint(self) -> str:
        """`flows/x.py:function`, the form prefect.yaml uses."""
        module, function = self.flow_path.split(":")
        return f"{module.replace('.', '/')}.py:{function}"

    def load_flow(self) -> Flow[Any, Any]:
        module, function = self.flow_path.split(":")
        return getattr(importlib.import_module(module), function)

    def to_deployment(self) -> RunnerDeployment:
        concurrency: int | ConcurrencyLimitConfig | None = self.concurrency_limit
        if self.cancel_new and self.concurrency_limit is not None:
            concurrency = ConcurrencyLimitConfig(
                limit=self.concurrency_limit,
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW,
            )
        return self.load_flow().to_deployment(
            name=self.name,
            description=self.description,
            tags=list(self.tags),
            schedule=self.schedule,
            concurrency_limit=concurrency,
            parameters=dict(self.parameters),
        )


def definitions(settings: Settings | None = None) -> list[DeploymentDefinition]:
    """Background change first: the warm pool takes it out of what the runner serves."""
    settings = settings or get_settings()
    return [
        DeploymentDefinition(
            full_name=settings.deployment_background_change,
            flow_path="flows.background_change:background_change",
            description="Change one pose's background (AI prompt, solid colour or upload).",
            tags=("posegen", "background-change"),
        ),
        DeploymentDefinition(
            full_name=settings.deployment_multi_format_export,
            flow_path="flows.export:multi_format_export",
            description="Export a generation's poses to platform formats, with a ZIP.",
            tags=("posegen", "export"),
        ),
        DeploymentDefinition(
            full_name=settings.deployment_nightly_exports,
            flow_path="flows.nightly_exports:nightly_exports",
            description="Export every pose changed since the last successful nightly run.",
            tags=("posegen", "export"),
            schedule=Cron(
                settings.nightly_exports_cron, timezone=settings.nightly_exports_timezone
            ),
            # One night at a time: two overlapping runs would export the same window twice.
            concurrency_limit=1,
        ),
        DeploymentDefinition(
            full_name=settings.deployment_refund_reconciler,
            flow_path="flows.refund_reconciler:refund_reconciler",
            description="Refund charges whose background-change run died without refunding.",
            tags=("posegen", "credits"),
            schedule=Interval(300),
            # One pass covers every open charge: a second one queued behind it (a burst of
            # failures triggering the automation) would only take runner slots from changes.
            concurrency_limit=1,
            cancel_new=True,
        ),
        DeploymentDefinition(
            full_name=settings.deployment_pose_request_stats,
            flow_path="flows.pose_request_stats:pose_request_stats",
            description="Hourly pose-request statistics: a snapshot row and two artifacts.",
            tags=("posegen", "pose-requests"),
            schedule=Cron("0 * * * *", timezone="UTC"),
            # Each run snapshots the same tables: overlapping runs would only duplicate work.
            concurrency_limit=1,
        ),
        DeploymentDefinition(
            full_name=settings.deployment_ops_alerts,
            flow_path="flows.ops_alerts:ops_alerts",
            description="Every minute: evaluate the five operational alerts, announce changes.",
            tags=("posegen", "operations"),
            schedule=Interval(60),
            # A run stuck behind a slow Prefect API must not queue more behind it: the next
            # minute's run measures afresh anyway.
            concurrency_limit=1,
            cancel_new=True,
        ),
    ]


def build_deployments() -> list[RunnerDeployment]:
    return [definition.to_deployment() for definition in definitions()]
