"""Exports run in this process, without Prefect: one format on request (regenerate) and a whole
generation for the CLI, with a callback per finished pose x format for its progress bars.

The `multi-format-export` flow composes the same steps (`ExportRun.prepare`/`render`,
`record_exports`, `store_zip`) as Prefect tasks, adding retries, an artifact and events; this
module is for callers that want the files now and can watch them being made.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from posegen.config import get_settings
from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain import export_records as records
from posegen.domain import exports as catalog
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import (
    FORMATS,
    ExportFailure,
    ExportFormat,
    ExportSource,
    ExportSummary,
    RenderedExport,
)
from posegen.errors import PosegenError
from posegen.imaging.exporting import ExportRun, store_generation_zip
from posegen.storage import Storage, get_storage

# (pose id, format name, error message or None) once a render finished.
Progress = Callable[[uuid.UUID, str, str | None], None]


def _prepare(session: Session, run: ExportRun, source: ExportSource) -> ExportSource:
    prepared = run.prepare(source)
    if prepared.mask_created or not source.mask_recorded:
        records.record_mask(session, source.pose_id, prepared.source.mask_key)
    return prepared.source


def regenerate_export(
    session: Session, storage: Storage, pose: Pose, fmt: ExportFormat
) -> RenderedExport:
    """Re-render one format of one pose; only that file (and its record) is replaced."""
    run = ExportRun(storage)
    source = _prepare(session, run, records.export_source(session, pose))
    rendered = run.render(source, fmt)
    records.record_rendered(session, storage, [rendered])
    return rendered


@dataclass(frozen=True)
class PlannedExport:
    plan: records.ExportPlan
    total: int


def plan_local_export(
    generation_id: uuid.UUID, formats: Sequence[ExportFormat] | None
) -> PlannedExport:
    """Formats default to the owner's nightly choice, else the whole catalog."""
    with session_scope() as session:
        generation = records.get_generation(session, generation_id)
        names = [fmt.name for fmt in formats] if formats else None
        names = names or records.get_default_formats(session, generation.user_id) or list(FORMATS)
        plan = records.plan_export(session, generation_id, ExportRequest(formats=names))
    return PlannedExport(plan, len(plan.pose_ids) * len(plan.formats))


def export_generation(
    planned: PlannedExport, progress: Progress | None = None, *, workers: int | None = None
) -> ExportSummary:
    """Render every pose x format in a thread pool, record them, and store the ZIP."""
    plan, storage = planned.plan, get_storage()
    run = ExportRun(storage)
    report = progress or (lambda pose_id, name, error: None)
    failures: list[ExportFailure] = []
    exported: list[RenderedExport] = []
    with session_scope() as session:
        sources = records.sources_for(session, plan.pose_ids)
    with ThreadPoolExecutor(max_workers=workers or get_settings().export_workers) as pool:
        prepared = {s.pose_id: pool.submit(_prepare_alone, run, s) for s in sources}
        renders: list[tuple[uuid.UUID, str, Future[RenderedExport]]] = []
        for pose_id, future in prepared.items():
            try:
                source = future.result()
            except Exception as exc:
                failures.append(ExportFailure(pose_id, None, _message(exc)))
                for name in plan.formats:
                    report(pose_id, name, _message(exc))
                continue
            for name in plan.formats:
                fmt = catalog.resolve_format(name)
                renders.append((pose_id, name, pool.submit(run.render, source, fmt)))
        for pose_id, name, render in renders:
            try:
                exported.append(render.result())
                report(pose_id, name, None)
            except Exception as exc:
                failures.append(ExportFailure(pose_id, name, _message(exc)))
                report(pose_id, name, _message(exc))
    zip_key = _record_and_zip(storage, plan.generation_id, exported)
    return ExportSummary(
        plan.generation_id, plan.user_id, plan.formats, tuple(exported), tuple(failures), zip_key
    )


def _prepare_alone(run: ExportRun, source: ExportSource) -> ExportSource:
    with session_scope() as session:
        return _prepare(session, run, source)


def _record_and_zip(
    storage: Storage, generation_id: uuid.UUID, exported: list[RenderedExport]
) -> str | None:
    with session_scope() as session:
        records.record_rendered(session, storage, exported)
        entries = records.generation_zip_entries(session, generation_id)
    return store_generation_zip(storage, generation_id, entries)


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PosegenError) else f"{type(exc).__name__}: {exc}"
