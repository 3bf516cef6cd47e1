"""Flow `nightly-exports`: find poses created or changed since the last successful nightly run →
export each generation's in its owner's chosen formats → publish a summary artifact.

The window starts where the last COMPLETED run of this flow (of this deployment, when deployed)
started, as Prefect recorded it, so a failed or missed night is covered by the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.runtime import deployment, flow_run

from flows.export import multi_format_export
from posegen.config import get_settings
from posegen.domain.export_requests import ExportRequest
from tasks.export import find_changed_poses, publish_nightly_summary

FLOW_NAME = "nightly-exports"


def last_successful_start() -> datetime | None:
    """When the previous COMPLETED nightly run started (this deployment's, if deployed)."""
    current, deployment_id = flow_run.id, deployment.id
    run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
    )
    if current:
        run_filter.id = FlowRunFilterId(not_any_=[current])  # type: ignore[list-item]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=run_filter,
            deployment_filter=(
                DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))  # type: ignore[list-item]
                if deployment_id
                else None
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return runs[0].start_time if runs else None


@flow(name=FLOW_NAME, log_prints=True)
def nightly_exports() -> dict[str, object]:
    """Export every pose changed since the last successful night, per its owner's formats."""
    until = datetime.now(UTC)
    since = last_successful_start() or until - timedelta(
        hours=get_settings().nightly_first_window_hours
    )
    batches = find_changed_poses(since, until)
    rows: list[dict[str, object]] = []
    for batch in batches:
        request = ExportRequest(formats=list(batch.formats), pose_ids=list(batch.pose_ids))
        state = multi_format_export(batch.generation_id, request, return_state=True)
        result = state.result(raise_on_failure=False) if state.is_completed() else None
        failed = result.get("failedPoseIds", []) if isinstance(result, dict) else []
        rows.append(
            {
                "generation": str(batch.generation_id),
                "user": str(batch.user_id),
                "poses": len(batch.pose_ids),
                "formats": ", ".join(batch.formats),
                "files": result.get("files", 0) if isinstance(result, dict) else 0,
                "failed": ", ".join(failed) if state.is_completed() else "all",
                "status": state.type.value,
            }
        )
    publish_nightly_summary(since, until, rows)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "generations": len(rows),
        "failedGenerations": sum(1 for row in rows if row["status"] != "COMPLETED"),
    }
