"""prefect.yaml (for `prefect deploy --all`) and the served deployments say the same thing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

from deployments.definitions import build_deployments
from posegen.config import get_settings

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def _from_yaml(entry: dict[str, Any]) -> dict[str, Any]:
    schedules = []
    for schedule in entry.get("schedules") or []:
        if "cron" in schedule:
            schedules.append(("cron", schedule["cron"], schedule.get("timezone") or "UTC"))
        else:
            schedules.append(("interval", float(schedule["interval"])))
    limit = entry.get("concurrency_limit")
    if isinstance(limit, dict):
        concurrency = (limit["limit"], limit.get("collision_strategy", "ENQUEUE"))
    else:
        concurrency = (limit, "ENQUEUE" if limit else None)
    return {
        "entrypoint": entry["entrypoint"],
        "description": entry.get("description"),
        "tags": list(entry.get("tags") or []),
        "schedules": schedules,
        "concurrency": concurrency,
        "parameters": entry.get("parameters") or {},
    }


def _served(deployment: Any) -> dict[str, Any]:
    schedules: list[tuple[Any, ...]] = []
    for created in deployment.schedules or []:
        schedule = created.schedule
        if isinstance(schedule, CronSchedule):
            schedules.append(("cron", schedule.cron, schedule.timezone or "UTC"))
        elif isinstance(schedule, IntervalSchedule):
            interval = schedule.interval
            assert isinstance(interval, timedelta)
            schedules.append(("interval", interval.total_seconds()))
        else:
            pytest.fail(f"unexpected schedule {schedule!r} on {deployment.name}")
    limit = deployment.concurrency_limit
    options = deployment.concurrency_options
    strategy = options.collision_strategy.value if options else ("ENQUEUE" if limit else None)
    return {
        "entrypoint": deployment.entrypoint,
        "description": deployment.description,
        "tags": list(deployment.tags),
        "schedules": schedules,
        "concurrency": (limit, strategy),
        "parameters": deployment.parameters or {},
    }


def test_prefect_yaml_declares_exactly_the_served_deployments() -> None:
    declared = {
        entry["name"]: _from_yaml(entry)
        for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    }
    served = {deployment.name: _served(deployment) for deployment in build_deployments()}
    assert sorted(declared) == sorted(served)
    for name, spec in served.items():
        assert declared[name] == spec, name


def test_every_deployment_name_comes_from_settings() -> None:
    settings = get_settings()
    full_names = {f"{d.flow_name}/{d.name}" for d in build_deployments()}
    assert full_names == {
        settings.deployment_background_change,
        settings.deployment_multi_format_export,
        settings.deployment_nightly_exports,
        settings.deployment_refund_reconciler,
        settings.deployment_pose_request_stats,
        settings.deployment_ops_alerts,
    }
