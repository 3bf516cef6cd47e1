"""Exports: the format catalog, starting an export run, results, the ZIP download, regenerating
one file, and each user's default formats for the nightly export."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from posegen.api import schemas
from posegen.api.deps import CurrentUser, SessionDep, StorageDep, parse_id
from posegen.api.flow_runs import submit_export
from posegen.api.rate_limit import RESPONSES as RATE_LIMITED
from posegen.api.rate_limit import Bucket, per_user
from posegen.api.schemas import CamelResponse
from posegen.config import get_settings
from posegen.db.models import User
from posegen.domain import export_charges
from posegen.domain import export_records as records
from posegen.domain import exports as catalog
from posegen.domain.export_requests import ExportFormatsSetting, ExportRequest, RegenerateExport
from posegen.domain.exports import (
    CUSTOM_MAX_SIDE,
    CUSTOM_MIN_SIDE,
    FORMATS,
    Category,
    ExportFormat,
    Fill,
)
from posegen.domain.poses import get_owned_generation, get_owned_pose
from posegen.errors import Conflict
from posegen.imaging.exporting import ZIP_CONTENT_TYPE, iter_file, write_zip
from posegen.localexport import regenerate_export
from posegen.storage import Storage

router = APIRouter(tags=["exports"])

_GENERATION_NOT_FOUND = "Generation not found"
_POSE_NOT_FOUND = "Pose not found"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unknown format, bad custom size or poseIds not in the generation"},
    401: {"description": "Missing or invalid bearer token"},
    404: {"description": "Generation or pose not found (or not yours)"},
}


class SafeAreaOut(CamelResponse):
    top: int
    right: int
    bottom: int
    left: int


class ExportFormatOut(CamelResponse):
    name: str
    display_name: str
    width: int | None
    height: int | None
    aspect_ratio: str
    category: str
    safe_area: SafeAreaOut
    file_type: str
    max_bytes: int | None
    dpi: int | None
    min_subject_coverage: float

    @classmethod
    def of(cls, fmt: ExportFormat) -> ExportFormatOut:
        return cls(
            name=fmt.name,
            display_name=fmt.display_name,
            width=fmt.width,
            height=fmt.height,
            aspect_ratio=fmt.aspect_ratio,
            category=fmt.category,
            safe_area=SafeAreaOut(**vars(fmt.safe_area)),
            file_type=fmt.file_type,
            max_bytes=fmt.max_bytes,
            dpi=fmt.dpi,
            min_subject_coverage=fmt.min_subject_coverage,
        )


class CustomSize(CamelResponse):
    syntax: str
    min_side: int
    max_side: int


class AiFillOut(CamelResponse):
    """The opt-in `fill: ai_expand`: what each FLUX-filled file costs the caller, and whether
    this deployment can do it at all (a FLUX API key is configured)."""

    fill: str
    cost_per_file: int
    available: bool


class ExportCatalog(CamelResponse):
    formats: list[ExportFormatOut]
    categories: list[str]
    custom: CustomSize
    ai_fill: AiFillOut


class ExportAccepted(CamelResponse):
    generation_id: uuid.UUID
    flow_run_id: uuid.UUID
    formats: list[str]
    pose_ids: list[uuid.UUID]
    zip_url: str
    fill: str
    # `ai_expand`: the files FLUX fills, and what they cost (charged now, refunded on failure).
    ai_files: int = 0
    credit_charged: int = 0
    credit_balance: int | None = None


class GenerationResults(CamelResponse):
    generation_id: uuid.UUID
    zip_url: str | None
    poses: list[schemas.PoseOut]


class ExportRegenerated(CamelResponse):
    pose_id: uuid.UUID
    format: str
    export_url: str


class ExportFormatsOut(CamelResponse):
    formats: list[str]


@router.get("/export-formats", response_model=ExportCatalog)
def list_export_formats(user: CurrentUser) -> ExportCatalog:
    """The format picker's data, grouped by `category` on the client."""
    return ExportCatalog(
        formats=[ExportFormatOut.of(fmt) for fmt in FORMATS.values()],
        categories=[c.value for c in Category if c != Category.CUSTOM],
        custom=CustomSize(syntax="custom:WxH", min_side=CUSTOM_MIN_SIDE, max_side=CUSTOM_MAX_SIDE),
        ai_fill=AiFillOut(
            fill=Fill.AI_EXPAND.value,
            cost_per_file=export_charges.cost_per_file(user),
            available=get_settings().flux_configured,
        ),
    )


@router.post(
    "/generations/{generation_id}/exports",
    status_code=202,
    response_model=ExportAccepted,
    responses={
        **_ERRORS,
        **RATE_LIMITED,
        403: {"description": "`fill: ai_expand` needs more credits (`required`, `balance`)"},
        503: {"description": "Export runs cannot be started right now, or AI fill is off"},
    },
    dependencies=[per_user(Bucket.EXPORTS)],
)
async def start_export(
    generation_id: str,
    request: ExportRequest,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> ExportAccepted:
    """Submit a `multi-format-export` run; `posegen.export.completed|failed` says when done.

    With `fill: ai_expand`, each file FLUX fills is charged before the run is submitted (403
    and nothing charged when credits are short) and refunded if the run cannot deliver it."""
    generation_uuid = parse_id(generation_id, _GENERATION_NOT_FOUND)
    plan = await run_in_threadpool(_plan, session, user, generation_uuid, request)
    run_key = f"export:{user.id}:{generation_uuid}:{idempotency_key}" if idempotency_key else None
    # A retried request (same Idempotency-Key) finds its charges instead of paying again.
    request_id = uuid.uuid5(uuid.NAMESPACE_URL, run_key) if run_key else uuid.uuid4()
    paid = request.fill == Fill.AI_EXPAND
    charge = await run_in_threadpool(_charge, session, user, plan, request, request_id)
    try:
        flow_run_id = await submit_export(
            generation_uuid, request, run_key, request_id if paid else None
        )
    except BaseException:
        if charge.newly_charged:
            await run_in_threadpool(export_charges.refund_files, session, request_id)
        raise
    return ExportAccepted(
        generation_id=generation_uuid,
        flow_run_id=flow_run_id,
        formats=list(plan.formats),
        pose_ids=list(plan.pose_ids),
        zip_url=storage.client_url(catalog.zip_key(generation_uuid)),
        fill=request.fill.value,
        ai_files=charge.files,
        credit_charged=charge.credits,
        credit_balance=charge.balance if paid else None,
    )


def _charge(
    session: Session,
    user: User,
    plan: records.ExportPlan,
    request: ExportRequest,
    request_id: uuid.UUID,
) -> export_charges.FillCharge:
    files = export_charges.paid_files(session, request_id, plan.pose_ids, request)
    return export_charges.charge_files(session, user.id, files)


def _plan(
    session: Session, user: User, generation_id: uuid.UUID, request: ExportRequest
) -> records.ExportPlan:
    get_owned_generation(session, user.id, generation_id)
    return records.plan_export(session, generation_id, request)


@router.get(
    "/generations/{generation_id}/results", response_model=GenerationResults, responses=_ERRORS
)
def read_results(
    generation_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> GenerationResults:
    """The poses with their export URLs (`exportFormats`) and the ZIP once one was built."""
    generation_uuid = parse_id(generation_id, _GENERATION_NOT_FOUND)
    generation = get_owned_generation(session, user.id, generation_uuid)
    key = catalog.zip_key(generation.id)
    return GenerationResults(
        generation_id=generation.id,
        zip_url=storage.client_url(key) if storage.exists(key) else None,
        poses=[schemas.PoseOut.of(pose, storage) for pose in generation.poses],
    )


@router.get(
    "/generations/{generation_id}/export-zip",
    response_class=StreamingResponse,
    responses={
        **_ERRORS,
        200: {"content": {ZIP_CONTENT_TYPE: {}}},
        409: {"description": "Requested formats not rendered yet (`missing`: per pose)"},
    },
)
def download_export_zip(
    generation_id: str,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    formats: Annotated[
        str | None, Query(description="Comma-separated format names; default: all rendered")
    ] = None,
) -> StreamingResponse:
    """A ZIP of the generation's rendered files, streamed from a temp file (never in memory).

    Missing formats are not rendered here (that is the export flow's job, with retries and
    events): the answer is 409 naming what is missing, so the client can start an export."""
    generation_uuid = parse_id(generation_id, _GENERATION_NOT_FOUND)
    generation = get_owned_generation(session, user.id, generation_uuid)
    wanted = catalog.parse_format_list(formats) if formats is not None else None
    entries, missing = records.zip_contents(generation, wanted)
    if missing:
        raise Conflict(
            "Some requested formats are not rendered yet: start an export for them first.",
            missing=[{"poseId": str(m.pose_id), "formats": list(m.formats)} for m in missing],
        )
    if not entries:
        raise Conflict("This generation has no exports yet: start an export first.", missing=[])
    path = _zip_to_temp_file(storage, entries)
    filename = f"poses-{generation.id}.zip"
    return StreamingResponse(
        iter_file(path),
        media_type=ZIP_CONTENT_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(path.stat().st_size),
            "Cache-Control": "private, no-cache",
        },
    )


def _zip_to_temp_file(storage: Storage, entries: list[tuple[str, str]]) -> Path:
    fd, name = tempfile.mkstemp(prefix="posegen-zip-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        write_zip(storage, entries, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.post(
    "/poses/{pose_id}/regenerate-export",
    response_model=ExportRegenerated,
    responses={**_ERRORS, **RATE_LIMITED},
    dependencies=[per_user(Bucket.REGENERATE_EXPORT)],
)
def regenerate_pose_export(
    pose_id: str,
    body: RegenerateExport,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> ExportRegenerated:
    """Re-render one format of one pose now; only that file is replaced."""
    pose = get_owned_pose(session, user.id, parse_id(pose_id, _POSE_NOT_FOUND))
    rendered = regenerate_export(session, storage, pose, catalog.resolve_format(body.format))
    return ExportRegenerated(
        pose_id=pose.id, format=rendered.format, export_url=storage.client_url(rendered.key)
    )


@router.get("/settings/export-formats", response_model=ExportFormatsOut)
def read_export_formats_setting(user: CurrentUser, session: SessionDep) -> ExportFormatsOut:
    return ExportFormatsOut(formats=records.get_default_formats(session, user.id))


@router.put("/settings/export-formats", response_model=ExportFormatsOut, responses=_ERRORS)
def update_export_formats_setting(
    body: ExportFormatsSetting, user: CurrentUser, session: SessionDep
) -> ExportFormatsOut:
    """The formats the nightly export renders for your new and changed poses; [] turns it off."""
    return ExportFormatsOut(formats=records.set_default_formats(session, user.id, body.formats))
