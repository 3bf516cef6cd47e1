"""Tasks of the export flows; each wraps one posegen call and passes ids and keys, not images."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import rate_limit
from prefect.runtime import flow_run as current_flow_run
from prefect.runtime import task_run as current_task_run
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from posegen.config import get_settings
from posegen.db.session import session_scope
from posegen.domain import export_charges
from posegen.domain import export_records as records
from posegen.domain import nightly_exports as nightly
from posegen.domain.export_records import ExportPlan
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import ExportSummary, RenderedExport, resolve_format
from posegen.domain.nightly_exports import NightlyBatch
from posegen.domain.poses import get_pose
from posegen.events import emit_export_finished, emit_export_progress
from posegen.flux import FluxClient
from posegen.imaging import exporting
from posegen.imaging.ai_fill import AiFill
from posegen.orchestration import FLUX_RATE_LIMIT, ensure_limits_sync
from posegen.storage import get_storage


def retry_unless_deterministic(task: Task, task_run: TaskRun, state: State) -> bool:  # type: ignore[type-arg]
    """Retry what may heal (network, storage hiccups, unexpected errors); a corrupt image, a
    missing pose or a limit the image cannot meet fail the same way every time."""
    return exporting.may_heal(getattr(state.data, "result", state.data))


_RETRIES: Final = 2  # 3 attempts in all
_RETRYING: dict[str, Any] = {
    "retries": _RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=get_settings().retry_backoff_seconds)(
        2
    ),
    "retry_condition_fn": retry_unless_deterministic,
}


@task(name="plan-export", **_RETRYING)
def plan_export(generation_id: uuid.UUID, request: ExportRequest) -> ExportPlan:
    with session_scope() as session:
        return records.plan_export(session, generation_id, request)


@task(name="charge-export-fill", **_RETRYING)
def charge_export_fill(
    plan: ExportPlan, request: ExportRequest, request_id: uuid.UUID
) -> export_charges.PaidFiles:
    """The files FLUX fills (none unless `fill` is `ai_expand`), each charged once: the API
    charged them already, so this finds its charges (or charges what a run started elsewhere,
    the CLI, did not). Ties the charges to this run for the reconciler."""
    with session_scope() as session:
        paid = export_charges.paid_files(session, request_id, plan.pose_ids, request)
        if paid.count:
            export_charges.charge_files(session, plan.user_id, paid)
            run_id = current_flow_run.get_id()
            if run_id:
                export_charges.record_flow_run(session, request_id, uuid.UUID(run_id))
    if paid.count:
        ensure_limits_sync()
    return paid


def _wait_for_flux() -> None:
    """Each FLUX request of an export passes the same rate limit as a background change's."""
    rate_limit(FLUX_RATE_LIMIT, strict=True)


@task(name="export-pose", **_RETRYING)
def export_pose(
    run_token: str,
    pose_id: uuid.UUID,
    formats: list[str],
    fill_formats: list[str] | None = None,
    paid_request_id: uuid.UUID | None = None,
) -> exporting.PoseExport:
    """Decode the pose once (segmenting it, and recording the mask, if it has none), then render
    and store each format. One task per pose, not per file: a task run costs Prefect tens of ms.

    A format that fails for good is reported in the result; an error that may heal fails the
    task, and the retry renders only the formats still missing. The last attempt reports such
    an error as that format's failure, so one bad format never costs the pose its other files.
    """
    with session_scope() as session:
        source = records.export_source(session, get_pose(session, pose_id))
    fill = None
    if paid_request_id is not None:
        ai = AiFill(FluxClient.from_settings, before_request=_wait_for_flux)
        fill = exporting.PaidFill(paid_request_id, frozenset(fill_formats or ()), ai)
    exported = exporting.run_for(run_token, get_storage()).export_pose(
        source,
        [resolve_format(name) for name in formats],
        may_retry=current_task_run.run_count <= _RETRIES,
        fill=fill,
    )
    if exported.mask_created or not source.mask_recorded:
        with session_scope() as session:
            records.record_mask(session, pose_id, exported.source.mask_key)
    return exported


@task(name="publish-paid-exports", **_RETRYING)
def publish_paid_exports(
    rendered: list[RenderedExport], request_id: uuid.UUID
) -> list[RenderedExport]:
    """A paid run made every file: move them from staging to their export keys."""
    return exporting.publish_staged(get_storage(), rendered, request_id)


@task(name="refund-export-fill", **_RETRYING)
def refund_export_fill(
    request_id: uuid.UUID, delivered: list[tuple[uuid.UUID, str]], flow_run_id: str | None
) -> int:
    """Refund each charged file not delivered (all of them when `delivered` is empty)."""
    with session_scope() as session:
        return export_charges.refund_files(
            session,
            request_id,
            delivered=frozenset(delivered),
            flow_run_id=uuid.UUID(flow_run_id) if flow_run_id else None,
        )


@task(name="discard-paid-exports", **_RETRYING)
def discard_paid_exports(generation_id: uuid.UUID, request_id: uuid.UUID) -> int:
    """A paid run that failed leaves no file behind (the poses keep the files they had)."""
    return exporting.discard_staged(get_storage(), generation_id, request_id)


@task(name="record-exports", **_RETRYING)
def record_exports(rendered: list[RenderedExport]) -> None:
    """One writer per run: parallel renders never race on a pose's exportFormats."""
    with session_scope() as session:
        records.record_rendered(session, get_storage(), rendered)


@task(name="build-zip", **_RETRYING)
def build_zip(generation_id: uuid.UUID) -> str | None:
    """Every export the generation has, one folder per pose; None when there is nothing yet."""
    with session_scope() as session:
        entries = records.generation_zip_entries(session, generation_id)
    return exporting.store_generation_zip(get_storage(), generation_id, entries)


@task(name="publish-export-artifact")
def publish_export_artifact(summary: ExportSummary) -> None:
    failed = ", ".join(str(pid) for pid in summary.failed_pose_ids) or "none"
    create_table_artifact(
        key=f"export-{summary.generation_id}",
        table=summary.table_rows(),
        description=(
            f"Multi-format export of generation `{summary.generation_id}`: "
            f"{len(summary.exported)} files, ZIP `{summary.zip_key}`; failed poses: {failed}."
        ),
    )


def report_export_progress(
    plan: ExportPlan, pose_id: uuid.UUID, poses_done: int, flow_run_id: str | None
) -> None:
    """Not a task: a progress note is not worth a task run's orchestration per pose."""
    emit_export_progress(
        generation_id=plan.generation_id,
        user_id=plan.user_id,
        pose_id=pose_id,
        poses_done=poses_done,
        poses_total=len(plan.pose_ids),
        flow_run_id=flow_run_id,
    )


@task(name="emit-export-event")
def emit_export_event(summary: ExportSummary, flow_run_id: uuid.UUID | None) -> None:
    """`completed` when every pose exported; `failed` (naming the poses) when any did not."""
    emit_export_finished(
        generation_id=summary.generation_id,
        user_id=summary.user_id,
        failed=bool(summary.failures),
        payload=summary.payload(get_storage().client_url),
        flow_run_id=flow_run_id,
    )


# -- nightly --------------------------------------------------------------------------------------


@task(name="find-changed-poses", **_RETRYING)
def find_changed_poses(since: datetime, until: datetime) -> list[NightlyBatch]:
    with session_scope() as session:
        return nightly.changed_since(session, since, until)


@task(name="publish-nightly-summary")
def publish_nightly_summary(
    since: datetime, until: datetime, rows: list[dict[str, object]]
) -> None:
    lines = [
        f"# Nightly export {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC",
        "",
        f"{len(rows)} generation(s) with new or changed poses.",
        "",
        "| generation | user | poses | formats | files | failed poses | status |",
        "|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        "| {generation} | {user} | {poses} | {formats} | {files} | {failed} | {status} |".format(
            **row
        )
        for row in rows
    )
    create_markdown_artifact(
        key="nightly-exports", markdown="\n".join(lines), description="Nightly export summary"
    )
