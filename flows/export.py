"""Flow `multi-format-export`: plan → export each pose in parallel (decode once, mask once, every
format) → record the files on the poses → ZIP → artifact → tell the user.

A pose or format whose renders keep failing is reported (artifact and event) and does not stop
the others.
Exports cost no credits, so a failure needs no refund.
"""

from __future__ import annotations

import uuid

from prefect import flow, unmapped
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from posegen.config import get_settings
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import ExportFailure, ExportSummary, RenderedExport
from posegen.errors import PermanentError
from posegen.imaging.exporting import PoseExport, failure_message, finish_run
from tasks.export import (
    build_zip,
    emit_export_event,
    export_pose,
    plan_export,
    publish_export_artifact,
    record_exports,
    report_export_progress,
)


def _outcome(future: PrefectFuture) -> tuple[object | None, str | None]:  # type: ignore[type-arg]
    """(result, None) or (None, error message) once the task run is final."""
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result(), None
    return None, failure_message(state.result(raise_on_failure=False))


@flow(
    name="multi-format-export",
    task_runner=ThreadPoolTaskRunner(max_workers=get_settings().export_workers),
    log_prints=True,
)
def multi_format_export(generation_id: uuid.UUID, request: ExportRequest) -> dict[str, object]:
    """Export the generation's poses (or `request.pose_ids`) in `request.formats`."""
    plan = plan_export(generation_id, request)
    run_id = flow_run.id
    token = run_id or uuid.uuid4().hex
    exported: list[RenderedExport] = []
    failures: list[ExportFailure] = []
    try:
        poses = export_pose.map(unmapped(token), list(plan.pose_ids), unmapped(list(plan.formats)))
        for done, (pose_id, future) in enumerate(zip(plan.pose_ids, poses, strict=True), 1):
            result, error = _outcome(future)
            if isinstance(result, PoseExport):
                exported.extend(result.rendered)
                failures.extend(result.failures)
            else:
                failures.append(ExportFailure(pose_id, None, error or "Unknown error"))
            report_export_progress(plan, pose_id, done, run_id)
    finally:
        finish_run(token)
    record_exports(exported)
    zip_key = build_zip(plan.generation_id)
    summary = ExportSummary(
        plan.generation_id, plan.user_id, plan.formats, tuple(exported), tuple(failures), zip_key
    )
    publish_export_artifact(summary)
    emit_export_event(summary, uuid.UUID(run_id) if run_id else None)
    if not exported:
        raise PermanentError("No pose could be exported; see the export artifact for why.")
    return {
        "generationId": str(plan.generation_id),
        "files": len(exported),
        "zipKey": zip_key,
        "failedPoseIds": [str(pid) for pid in summary.failed_pose_ids],
    }
