"""Multi-format export: the format catalog, `custom:WxH`, the export request, keys and records.

Every platform format is one small `ExportFormat` spec in `FORMATS`; nothing else branches on a
format's name. The rendering code reads a spec's numbers (size, safe area, byte limit, dpi), so a
new platform is one more entry here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from posegen.db.models import ExportSettings, Generation, Pose, PoseStatus
from posegen.domain.background import pose_images
from posegen.domain.bodies import CamelBody
from posegen.errors import NotFound, ValidationFailed
from posegen.storage import Storage

CUSTOM_PREFIX: Final = "custom:"
CUSTOM_MIN_SIDE: Final = 64
CUSTOM_MAX_SIDE: Final = 8000
MAX_FORMATS_PER_REQUEST: Final = 20
MAX_POSES_PER_REQUEST: Final = 500
_CUSTOM: Final = re.compile(r"custom:(\d{1,5})[xX](\d{1,5})")


class Category(StrEnum):
    SOCIAL = "social"
    ECOMMERCE = "ecommerce"
    PRINT = "print"
    CUSTOM = "custom"


class FileType(StrEnum):
    """`auto`: PNG when the rendered image has transparency, JPEG otherwise."""

    JPEG = "jpeg"
    PNG = "png"
    AUTO = "auto"


@dataclass(frozen=True)
class SafeArea:
    """Pixels at each edge where a platform draws its own UI; the subject stays out of them."""

    top: int = 0
    right: int = 0
    bottom: int = 0
    left: int = 0


@dataclass(frozen=True)
class ExportFormat:
    """One output format. `width`/`height` None means the source's own size (`original`)."""

    name: str
    display_name: str
    width: int | None
    height: int | None
    aspect_ratio: str
    category: Category
    file_type: FileType = FileType.JPEG
    safe_area: SafeArea = SafeArea()
    max_bytes: int | None = None
    jpeg_quality: int = 92
    dpi: int | None = None
    # Fraction of the frame's height the subject must cover (marketplaces demand big products).
    min_subject_coverage: float = 0.0

    @property
    def slug(self) -> str:
        """The name as it appears in file names and keys (no ':' there)."""
        return self.name.replace(":", "-")

    @property
    def keeps_source(self) -> bool:
        return self.width is None or self.height is None

    def frame_size(self, source_size: tuple[int, int]) -> tuple[int, int]:
        if self.width is None or self.height is None:
            return source_size
        return (self.width, self.height)


_CATALOG: Final = (
    ExportFormat(
        "instagram_story",
        "Instagram Story",
        1080,
        1920,
        "9:16",
        Category.SOCIAL,
        safe_area=SafeArea(top=250, bottom=340),
    ),
    ExportFormat("instagram_feed", "Instagram Feed", 1080, 1350, "4:5", Category.SOCIAL),
    ExportFormat(
        "tiktok",
        "TikTok",
        1080,
        1920,
        "9:16",
        Category.SOCIAL,
        safe_area=SafeArea(top=150, right=150, bottom=440),
    ),
    ExportFormat(
        "shopee_product",
        "Shopee Product",
        1024,
        1024,
        "1:1",
        Category.ECOMMERCE,
        max_bytes=2_000_000,
        jpeg_quality=95,
        min_subject_coverage=0.6,
    ),
    ExportFormat(
        "tokopedia_product",
        "Tokopedia Product",
        1200,
        1200,
        "1:1",
        Category.ECOMMERCE,
        max_bytes=5_000_000,
        jpeg_quality=95,
        min_subject_coverage=0.6,
    ),
    ExportFormat(
        "a4_print",
        "A4 Print (300 dpi)",
        2480,
        3508,
        "A4",
        Category.PRINT,
        jpeg_quality=95,
        dpi=300,
    ),
    ExportFormat(
        "original", "Original", None, None, "source", Category.PRINT, file_type=FileType.PNG
    ),
)
FORMATS: Final[dict[str, ExportFormat]] = {fmt.name: fmt for fmt in _CATALOG}


def _valid_names_hint() -> str:
    names = ", ".join(FORMATS)
    return f"valid formats: {names}, or {CUSTOM_PREFIX}WxH ({CUSTOM_MIN_SIDE}-{CUSTOM_MAX_SIDE} px)"


def resolve_format(name: str) -> ExportFormat:
    """The spec for a catalog name or a `custom:WxH` size; ValidationFailed says what is valid."""
    found = FORMATS.get(name)
    if found is not None:
        return found
    match = _CUSTOM.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValidationFailed(f"Unknown export format {name!r}; {_valid_names_hint()}.")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if not CUSTOM_MIN_SIDE <= side <= CUSTOM_MAX_SIDE:
            raise ValidationFailed(
                f"Custom size {width}x{height} is out of range: each side must be "
                f"{CUSTOM_MIN_SIDE} to {CUSTOM_MAX_SIDE} px."
            )
    return ExportFormat(
        f"{CUSTOM_PREFIX}{width}x{height}",
        f"Custom {width}x{height}",
        width,
        height,
        f"{width}:{height}",
        Category.CUSTOM,
        file_type=FileType.AUTO,
    )


def resolve_formats(names: Iterable[str]) -> tuple[ExportFormat, ...]:
    """Every name resolved, duplicates dropped in order; all unknown names reported at once."""
    resolved: dict[str, ExportFormat] = {}
    problems: list[str] = []
    for name in names:
        try:
            fmt = resolve_format(name.strip() if isinstance(name, str) else name)
        except ValidationFailed as exc:
            problems.append(exc.message)
            continue
        resolved.setdefault(fmt.name, fmt)
    if problems:
        raise ValidationFailed(" ".join(problems))
    if not resolved:
        raise ValidationFailed(f"Choose at least one export format; {_valid_names_hint()}.")
    return tuple(resolved.values())


def parse_format_list(value: str) -> tuple[ExportFormat, ...]:
    """`a,b` as a query string or CLI option writes it."""
    return resolve_formats(part for part in value.split(",") if part.strip())


def _format_names(value: list[str]) -> list[str]:
    try:
        return [fmt.name for fmt in resolve_formats(value)]
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


class ExportRequest(CamelBody):
    """Body of POST /generations/{id}/exports and the `multi-format-export` flow's parameter."""

    formats: list[str] = Field(min_length=1, max_length=MAX_FORMATS_PER_REQUEST)
    pose_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_POSES_PER_REQUEST)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        return _format_names(value)

    @property
    def specs(self) -> tuple[ExportFormat, ...]:
        return resolve_formats(self.formats)


class RegenerateExport(CamelBody):
    """Body of POST /poses/{id}/regenerate-export."""

    format: str

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return _format_names([value])[0]


class ExportFormatsSetting(CamelBody):
    """Body of PUT /settings/export-formats: the formats the nightly export renders for a user.
    An empty list turns the nightly export off for that user."""

    formats: list[str] = Field(max_length=MAX_FORMATS_PER_REQUEST)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        return _format_names(value) if value else []


# -- keys ---------------------------------------------------------------------------------------


def export_key(generation_id: uuid.UUID, pose_id: uuid.UUID, fmt: ExportFormat, ext: str) -> str:
    return f"exports/{generation_id}/{pose_id}/{fmt.slug}.{ext}"


def zip_key(generation_id: uuid.UUID) -> str:
    return f"exports/{generation_id}/poses-{generation_id}.zip"


def zip_entry_name(pose_id: uuid.UUID, format_name: str, key: str) -> str:
    """`{poseId}/pose-{poseId}-{format}.{ext}`: one folder per pose inside the ZIP."""
    ext = key.rsplit(".", 1)[-1]
    slug = format_name.replace(":", "-")
    return f"{pose_id}/pose-{pose_id}-{slug}.{ext}"


# -- what an export reads -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSource:
    """Where one pose's export inputs live. `background_key` is set when the background was
    changed: exports then re-composite the subject over it instead of extending the photo."""

    pose_id: uuid.UUID
    generation_id: uuid.UUID
    image_key: str
    original_key: str
    mask_key: str
    mask_recorded: bool
    background_key: str | None

    def with_mask(self, mask_key: str) -> ExportSource:
        return replace(self, mask_key=mask_key, mask_recorded=True)


def export_source(session: Session, pose: Pose) -> ExportSource:
    images = pose_images(session, pose.id)
    changed = pose.background_changed and pose.background_key is not None
    return ExportSource(
        pose_id=pose.id,
        generation_id=pose.generation_id,
        image_key=pose.image_key,
        original_key=pose.original_image_key,
        mask_key=pose.mask_key or images.mask_key,
        mask_recorded=pose.mask_key is not None,
        background_key=pose.background_key if changed else None,
    )


@dataclass(frozen=True)
class ExportPlan:
    generation_id: uuid.UUID
    user_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    formats: tuple[str, ...]


def get_generation(session: Session, generation_id: uuid.UUID) -> Generation:
    generation = session.get(Generation, generation_id)
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def plan_export(session: Session, generation_id: uuid.UUID, request: ExportRequest) -> ExportPlan:
    """Which poses of the generation to export; poseIds outside it are refused, not skipped."""
    generation = get_generation(session, generation_id)
    ready = [pose.id for pose in generation.poses if pose.status != PoseStatus.PROCESSING]
    if request.pose_ids is None:
        chosen = ready
    else:
        known = {pose.id for pose in generation.poses}
        unknown = [str(pid) for pid in request.pose_ids if pid not in known]
        if unknown:
            raise ValidationFailed(
                "poseIds not in this generation: " + ", ".join(unknown), poseIds=unknown
            )
        chosen = list(dict.fromkeys(request.pose_ids))
    if not chosen:
        raise ValidationFailed("This generation has no poses ready to export.")
    return ExportPlan(generation.id, generation.user_id, tuple(chosen), tuple(request.formats))


def sources_for(session: Session, pose_ids: Sequence[uuid.UUID]) -> list[ExportSource]:
    poses = session.scalars(select(Pose).where(Pose.id.in_(pose_ids))).all()
    by_id = {pose.id: pose for pose in poses}
    return [export_source(session, by_id[pid]) for pid in pose_ids if pid in by_id]


# -- what an export produced ------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedExport:
    pose_id: uuid.UUID
    format: str
    key: str
    file_type: FileType
    width: int
    height: int
    bytes: int
    quality: int | None


@dataclass(frozen=True)
class ExportFailure:
    pose_id: uuid.UUID
    format: str | None  # None: the pose failed before any format (its source is unreadable)
    error: str


@dataclass(frozen=True)
class ExportSummary:
    """What one export run produced and what failed: the artifact, the event and the CLI show it."""

    generation_id: uuid.UUID
    user_id: uuid.UUID
    formats: tuple[str, ...]
    exported: tuple[RenderedExport, ...]
    failures: tuple[ExportFailure, ...]
    zip_key: str | None

    @property
    def failed_pose_ids(self) -> list[uuid.UUID]:
        return list(dict.fromkeys(failure.pose_id for failure in self.failures))

    def table_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {
                "pose": str(item.pose_id),
                "format": item.format,
                "status": "exported",
                "file": item.key,
                "size": f"{item.width}x{item.height}",
                "bytes": item.bytes,
                "error": "",
            }
            for item in self.exported
        ]
        rows.extend(
            {
                "pose": str(failure.pose_id),
                "format": failure.format or "(all)",
                "status": "failed",
                "file": "",
                "size": "",
                "bytes": 0,
                "error": failure.error,
            }
            for failure in self.failures
        )
        return rows

    def payload(self, url_of: Callable[[str], str]) -> dict[str, object]:
        """The event payload: URLs per pose and format, the ZIP, and each failure by name."""
        urls: dict[str, dict[str, str]] = {}
        for item in self.exported:
            urls.setdefault(str(item.pose_id), {})[item.format] = url_of(item.key)
        return {
            "generationId": str(self.generation_id),
            "formats": list(self.formats),
            "exports": urls,
            "zipUrl": url_of(self.zip_key) if self.zip_key else None,
            "failedPoseIds": [str(pid) for pid in self.failed_pose_ids],
            "failures": [
                {"poseId": str(f.pose_id), "format": f.format, "errorMessage": f.error}
                for f in self.failures
            ],
        }


# -- records on the pose --------------------------------------------------------------------------
# Bookkeeping writes keep `updated_at` as it was: it says when the pose's image changed, which is
# what the nightly export selects on; its own writes must not re-select the pose every night.


def record_mask(session: Session, pose_id: uuid.UUID, mask_key: str) -> None:
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id, Pose.mask_key.is_(None))
        .values(mask_key=mask_key, updated_at=Pose.updated_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def record_exports(session: Session, pose_id: uuid.UUID, keys: dict[str, str]) -> dict[str, str]:
    """Merge `{format: key}` into the pose's exportFormats; returns keys that were replaced by a
    key with another extension (their files are now orphans the caller may delete)."""
    pose = session.scalar(select(Pose).where(Pose.id == pose_id).with_for_update())
    if pose is None:
        raise NotFound("Pose not found")
    current = dict(pose.export_formats or {})
    replaced = {
        name: current[name]
        for name, key in keys.items()
        if name in current and current[name] != key
    }
    current.update(keys)
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id)
        .values(export_formats=current, updated_at=Pose.updated_at)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return replaced


def record_rendered(session: Session, storage: Storage, rendered: Sequence[RenderedExport]) -> None:
    """Record a run's files pose by pose; a file a new one replaced under another extension
    (a custom size that gained transparency: .jpg → .png) is deleted."""
    by_pose: dict[uuid.UUID, dict[str, str]] = {}
    for item in rendered:
        by_pose.setdefault(item.pose_id, {})[item.format] = item.key
    for pose_id, keys in by_pose.items():
        for stale in record_exports(session, pose_id, keys).values():
            storage.delete(stale)


@dataclass(frozen=True)
class MissingExports:
    pose_id: uuid.UUID
    formats: tuple[str, ...]


def zip_contents(
    generation: Generation, formats: Sequence[ExportFormat] | None
) -> tuple[list[tuple[str, str]], list[MissingExports]]:
    """(ZIP entry name, storage key) pairs, and per pose the requested formats not rendered yet.

    Without `formats`, every format each pose has is included and nothing is missing."""
    entries: list[tuple[str, str]] = []
    missing: list[MissingExports] = []
    for pose in generation.poses:
        recorded: dict[str, str] = dict(pose.export_formats or {})
        wanted = [fmt.name for fmt in formats] if formats is not None else sorted(recorded)
        absent = tuple(name for name in wanted if name not in recorded)
        if absent:
            missing.append(MissingExports(pose.id, absent))
        entries.extend(
            (zip_entry_name(pose.id, name, recorded[name]), recorded[name])
            for name in wanted
            if name in recorded
        )
    return entries, missing


def generation_zip_entries(session: Session, generation_id: uuid.UUID) -> list[tuple[str, str]]:
    """Every export the generation's poses have, for the generation's stored ZIP."""
    entries, _ = zip_contents(get_generation(session, generation_id), None)
    return entries


# -- per-user defaults and the nightly selection -------------------------------------------------


def get_default_formats(session: Session, user_id: uuid.UUID) -> list[str]:
    row = session.get(ExportSettings, user_id)
    return list(row.formats) if row is not None else []


def set_default_formats(session: Session, user_id: uuid.UUID, formats: list[str]) -> list[str]:
    names = [fmt.name for fmt in resolve_formats(formats)] if formats else []
    row = session.get(ExportSettings, user_id)
    if row is None:
        session.add(ExportSettings(user_id=user_id, formats=names))
    else:
        row.formats = names
    session.commit()
    return names


@dataclass(frozen=True)
class NightlyBatch:
    """One generation's poses changed in the window, in its owner's chosen formats."""

    generation_id: uuid.UUID
    user_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    formats: tuple[str, ...]


def changed_since(session: Session, since: datetime, until: datetime) -> list[NightlyBatch]:
    """Poses created or changed in [since, until) (creation sets `updated_at` too), grouped by
    generation, for users who chose nightly formats. Poses mid-change wait for the next night."""
    rows = session.execute(
        select(Pose.id, Pose.generation_id, Generation.user_id, ExportSettings.formats)
        .join(Generation, Pose.generation_id == Generation.id)
        .join(ExportSettings, ExportSettings.user_id == Generation.user_id)
        .where(
            Pose.updated_at >= since,
            Pose.updated_at < until,
            Pose.status != PoseStatus.PROCESSING,
        )
        .order_by(Generation.id, Pose.created_at)
    ).all()
    grouped: dict[uuid.UUID, tuple[uuid.UUID, list[uuid.UUID], list[str]]] = {}
    for pose_id, generation_id, user_id, formats in rows:
        if formats:
            grouped.setdefault(generation_id, (user_id, [], list(formats)))[1].append(pose_id)
    return [
        NightlyBatch(gid, uid, tuple(pids), tuple(formats))
        for gid, (uid, pids, formats) in grouped.items()
    ]
