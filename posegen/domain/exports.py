"""Multi-format export's pure part: the format catalog, `custom:WxH`, storage keys and the value
types of a run (no database, no request bodies: imaging imports only this).

Request bodies live in `export_requests`, database reads and writes in `export_records`, the
nightly selection in `nightly_exports`.

Every platform format is one small `ExportFormat` spec in `FORMATS`; nothing else branches on a
format's name. The rendering code reads a spec's numbers (size, safe area, byte limit, dpi), so a
new platform is one more entry here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from posegen.errors import ValidationFailed

CUSTOM_PREFIX: Final = "custom:"
CUSTOM_MIN_SIDE: Final = 64
CUSTOM_MAX_SIDE: Final = 8000
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


# -- AI fill ----------------------------------------------------------------------------------


class Fill(StrEnum):
    """What fills a frame the pose's own pixels do not: `reframe` (free: crop, or the subject over
    its own blurred background) or `ai_expand` (paid per file: FLUX outpaints an unchanged photo
    to the format, or draws an AI background again at the format's aspect)."""

    REFRAME = "reframe"
    AI_EXPAND = "ai_expand"


class AiFillKind(StrEnum):
    EXPAND = "expand"  # an unchanged photo, outpainted (`flux-pro-1.0-expand`)
    BACKGROUND = "background"  # an AI background, generated again at the format's aspect


# A cover fit that keeps at least this share of the source along its cut axis is fine as it is:
# a few per cent off a photo's edges (or an AI background's) loses nothing a seller would miss.
AI_FILL_KEEPS: Final = 0.95


def needs_ai_fill(source: tuple[int, int], frame: tuple[int, int]) -> bool:
    """Whether covering `frame` with `source` would cut more than a sliver of it: only then is
    FLUX worth asking (and paying) for. Same aspect within 5 %: a plain resize or crop does."""
    source_aspect, frame_aspect = source[0] / source[1], frame[0] / frame[1]
    kept = min(source_aspect / frame_aspect, frame_aspect / source_aspect)
    return kept < AI_FILL_KEEPS


def ai_fill_kind(
    background_changed: bool, background_mode: str | None, background_prompt: str | None
) -> AiFillKind | None:
    """Which AI fill a pose can have: an unchanged photo is expanded, an AI background is drawn
    again; a solid colour or an uploaded image already renders for any frame (None: no FLUX)."""
    if not background_changed:
        return AiFillKind.EXPAND
    if background_mode == "ai_generate" and background_prompt:
        return AiFillKind.BACKGROUND
    return None


def ai_fill_formats(
    kind: AiFillKind | None, pose_size: tuple[int, int], formats: Iterable[ExportFormat]
) -> tuple[str, ...]:
    """The formats of one pose that an `ai_expand` export fills with FLUX (and charges for).

    An AI background was generated at the pose's aspect, so the pose's size stands for it.
    """
    if kind is None:
        return ()
    return tuple(
        fmt.name
        for fmt in formats
        if not fmt.keeps_source and needs_ai_fill(pose_size, fmt.frame_size(pose_size))
    )


# -- keys ---------------------------------------------------------------------------------------


def export_key(generation_id: uuid.UUID, pose_id: uuid.UUID, fmt: ExportFormat, ext: str) -> str:
    return f"exports/{generation_id}/{pose_id}/{fmt.slug}.{ext}"


def staged_key(key: str, request_id: uuid.UUID) -> str:
    """Where a paid (AI fill) run writes `key` until every file of the run is made: a failed run
    leaves the pose's recorded files untouched and its own files are deleted with the folder."""
    generation, rest = key.removeprefix("exports/").split("/", 1)
    return f"{staging_prefix(uuid.UUID(generation), request_id)}{rest}"


def staging_prefix(generation_id: uuid.UUID, request_id: uuid.UUID) -> str:
    return f"exports/{generation_id}/staging/{request_id}/"


def published_key(staged: str, request_id: uuid.UUID) -> str:
    """The final key of a staged file (`staged_key` undone)."""
    return staged.replace(f"/staging/{request_id}/", "/", 1)


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
    # The prompt of an AI background (an `ai_expand` export asks FLUX for it again).
    background_prompt: str | None = None

    def with_mask(self, mask_key: str) -> ExportSource:
        return replace(self, mask_key=mask_key, mask_recorded=True)


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
