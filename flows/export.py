"""Flow `multi-format-export`: plan → export each pose in parallel (decode once, mask once, every
format) → record the files on the poses → ZIP → artifact → tell the user.

A pose or format whose renders keep failing is reported (artifact and event) and does not stop
the others.
A reframing export costs no credits. An `ai_expand` export is paid per file FLUX fills, and is
all or nothing: its files are staged until every one is made, then published; if any fails, the
staged files are deleted, every charge is refunded (exactly once: by the flow, else its failure
hooks, else the refund reconciler), and the poses keep the files they had.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow, unmapped
from prefect.client.schemas.objects import FlowRun
from prefect.flows import Flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from posegen.config import get_settings
from posegen.db.session import session_scope
from posegen.domain.export_charges import refund_files
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import ExportFailure, ExportSummary, Fill, RenderedExport
from posegen.errors import PermanentError
from posegen.imaging.exporting import PoseExport, discard_staged, failure_message, finish_run
from posegen.storage import get_storage
from tasks.export import (
    build_zip,
    charge_export_fill,
    discard_paid_exports,
    emit_export_event,
    export_pose,
    plan_export,
    publish_export_artifact,
    publish_paid_exports,
    record_exports,
    refund_export_fill,
    report_export_progress,
)

PAID_RUN_FAILED = (
    "The AI fill could not make every file, so nothing was kept; your credits were refunded."
)


def _paid_request_id(
    request: ExportRequest, request_id: uuid.UUID | None, run_id: object
) -> uuid.UUID | None:
    """The request a paid run's charges belong to: the API's, or this run's own id."""
    if request.fill != Fill.AI_EXPAND:
        return None
    return request_id or (uuid.UUID(str(run_id)) if run_id else uuid.uuid4())


def refund_failed_export(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Failure, crash and cancellation hook: a paid run's charges are refunded (once, by the
    ledger's rule, so after the flow's own refund this gives nothing) and its staged files go."""
    params = flow_run.parameters
    request = ExportRequest.model_validate(params["request"])
    raw = params.get("request_id")
    request_id = _paid_request_id(request, uuid.UUID(str(raw)) if raw else None, flow_run.id)
    if request_id is None:
        return
    with session_scope() as session:
        refund_files(session, request_id, flow_run_id=flow_run.id)
    discard_staged(get_storage(), uuid.UUID(str(params["generation_id"])), request_id)


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
    on_failure=[refund_failed_export],
    on_crashed=[refund_failed_export],
    on_cancellation=[refund_failed_export],
)
def multi_format_export(
    generation_id: uuid.UUID, request: ExportRequest, request_id: uuid.UUID | None = None
) -> dict[str, object]:
    """Export the generation's poses (or `request.pose_ids`) in `request.formats`.

    `request_id`: the paid request whose charges the API made (`fill: ai_expand`)."""
    plan = plan_export(generation_id, request)
    run_id = flow_run.id
    paid_id = _paid_request_id(request, request_id, run_id)
    paid = charge_export_fill(plan, request, paid_id) if paid_id is not None else None
    token = run_id or uuid.uuid4().hex
    exported: list[RenderedExport] = []
    failures: list[ExportFailure] = []
    try:
        fill_formats = [list(paid.formats_of(pid)) if paid else [] for pid in plan.pose_ids]
        poses = export_pose.map(
            unmapped(token),
            list(plan.pose_ids),
            unmapped(list(plan.formats)),
            fill_formats,
            unmapped(paid_id),
        )
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
    if paid_id is not None:
        if failures or not exported:
            for failure in failures:
                print(f"pose {failure.pose_id} format {failure.format}: {failure.error}")
            discard_paid_exports(plan.generation_id, paid_id)
            refund_export_fill(paid_id, [], run_id)
            summary = ExportSummary(
                plan.generation_id, plan.user_id, plan.formats, (), tuple(failures), None
            )
            publish_export_artifact(summary)
            emit_export_event(summary, uuid.UUID(run_id) if run_id else None)
            raise PermanentError(PAID_RUN_FAILED)
        exported = publish_paid_exports(exported, paid_id)
        # Charged by the API's plan but not made here (the pose changed in between): refunded.
        refund_export_fill(paid_id, [(item.pose_id, item.format) for item in exported], run_id)
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
