"""Export steps, storage key in → storage key out: decode a pose once per run, render any format
from it, and build ZIPs through a temp file (never in memory).

An `ExportRun` is the unit that keeps decoded poses: the Prefect tasks of one flow run, the CLI
and the regenerate endpoint each use one, so every format of a pose is derived from a single
decode of its images (and a single segmentation when the pose had no mask yet). `export_pose`
renders all of a pose's formats in one call: the flow runs it as one task per pose.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from PIL import Image

from posegen.domain.exports import (
    ExportFailure,
    ExportFormat,
    ExportSource,
    RenderedExport,
    export_key,
    published_key,
    staged_key,
    staging_prefix,
    zip_key,
)
from posegen.errors import PosegenError, is_retryable
from posegen.imaging.ai_fill import AiFill
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_export, encode_png
from posegen.imaging.reframe import (
    Box,
    Framing,
    cut_sides,
    plan_framing,
    render_framing,
    render_recomposited,
    subject_box,
)
from posegen.imaging.segmentation import cutout, segment
from posegen.storage import Storage

ZIP_CONTENT_TYPE: Final = "application/zip"
_ZIP_CHUNK: Final = 1024 * 1024
# Decoded poses kept per run: enough for the poses being rendered in parallel, bounded so a
# 500-pose export does not hold 500 decoded photos (an evicted pose is simply decoded again).
_CACHED_POSES: Final = 8
_PNG_SIGNATURE: Final = b"\x89PNG"


@dataclass(frozen=True)
class DecodedPose:
    """A pose's images, decoded once: the current image, its mask and the subject's box; for a
    changed background also the cut-out subject and the background to re-composite it over.
    `stored_png` is the image's stored file when it is a PNG (`original` reuses its data)."""

    image: Image.Image
    mask: Image.Image
    subject: Box | None
    cutout: Image.Image | None = None
    background: Image.Image | None = None
    stored_png: bytes | None = None
    # Sides where the photo cuts the subject (`reframe.cut_sides`); None: measured when needed.
    cut: frozenset[str] | None = None


@dataclass(frozen=True)
class PaidFill:
    """One pose's share of an `ai_expand` export: the formats FLUX fills (each paid for), how
    to ask FLUX, and the request whose staging folder holds the run's files until published."""

    request_id: uuid.UUID
    formats: frozenset[str]
    ai: AiFill


@dataclass(frozen=True)
class PreparedPose:
    source: ExportSource
    mask_created: bool


@dataclass(frozen=True)
class PoseExport:
    """One pose's formats: the files stored, and the formats that failed for good (by name)."""

    source: ExportSource
    mask_created: bool
    rendered: tuple[RenderedExport, ...]
    failures: tuple[ExportFailure, ...]


def may_heal(error: object) -> bool:
    """Worth retrying: a network or storage hiccup, or an error we did not foresee. Our own
    errors (a corrupt image, a missing pose, a limit the image cannot meet) recur every time."""
    return is_retryable(error, unforeseen=True)


def failure_message(error: object) -> str:
    """Our own errors carry a message safe to show; anything else is named, not described."""
    if isinstance(error, PosegenError):
        return error.message
    return f"Rendering failed on our side ({type(error).__name__})."


def render_image(pose: DecodedPose, fmt: ExportFormat) -> tuple[Image.Image, Framing | None]:
    """The framed image for `fmt` (and how it was framed); `original` is the source untouched."""
    if fmt.keeps_source:
        return pose.image, None
    framing = plan_framing(
        pose.image.size,
        pose.subject,
        fmt.frame_size(pose.image.size),
        fmt.safe_area,
        fmt.min_subject_coverage,
        cut=pose.cut if pose.cut is not None else cut_sides(pose.mask, pose.subject),
    )
    if pose.cutout is not None and pose.background is not None:
        return render_recomposited(framing, pose.cutout, pose.background), framing
    return render_framing(framing, pose.image, pose.mask), framing


class ExportRun:
    """Decoded poses for one export run, shared by the threads rendering its formats."""

    def __init__(self, storage: Storage, *, cached_poses: int = _CACHED_POSES) -> None:
        self.storage = storage
        self._cached_poses = cached_poses
        self._decoded: OrderedDict[uuid.UUID, DecodedPose] = OrderedDict()
        self._lock = threading.Lock()
        self._pose_locks: dict[uuid.UUID, threading.RLock] = {}
        self._rendered: dict[tuple[uuid.UUID, str], RenderedExport] = {}

    def prepare(self, source: ExportSource) -> PreparedPose:
        """Make sure the pose has a mask (segmenting once, cached in storage) and decode it.

        Returns the source pointing at its mask, and whether the mask is new (the caller
        records it on the pose)."""
        created = self._ensure_mask(source)
        self.decoded(source)
        return PreparedPose(source.with_mask(source.mask_key), created)

    def export_pose(
        self,
        source: ExportSource,
        formats: Iterable[ExportFormat],
        *,
        may_retry: bool = False,
        fill: PaidFill | None = None,
    ) -> PoseExport:
        """Prepare the pose, then render and store each format; a format failing for good is
        reported and does not stop the others. An unreadable pose raises.

        With `may_retry`, an error that may heal is raised once the other formats are done, for
        the caller to retry the pose: formats this run already stored are not rendered again.
        With `fill`, its formats are filled by FLUX and every file goes to the run's staging
        folder (`fill.request_id`) until the whole run is published.
        """
        prepared = self.prepare(source)
        rendered: list[RenderedExport] = []
        failures: list[ExportFailure] = []
        retry: BaseException | None = None
        for fmt in formats:
            try:
                rendered.append(self._render_once(prepared.source, fmt, fill))
            except Exception as exc:
                if may_retry and may_heal(exc):
                    retry = retry or exc
                else:
                    failures.append(ExportFailure(source.pose_id, fmt.name, failure_message(exc)))
        if retry is not None:
            raise retry
        return PoseExport(prepared.source, prepared.mask_created, tuple(rendered), tuple(failures))

    def _render_once(
        self, source: ExportSource, fmt: ExportFormat, fill: PaidFill | None = None
    ) -> RenderedExport:
        done = self._rendered.get((source.pose_id, fmt.name))
        if done is None:
            done = self._rendered[source.pose_id, fmt.name] = self.render(source, fmt, fill)
        return done

    def render(
        self, source: ExportSource, fmt: ExportFormat, fill: PaidFill | None = None
    ) -> RenderedExport:
        """Render, encode and store one format; the write is atomic, so a retry just rewrites.
        Under a paid `fill` the file is staged (its key is the staging key)."""
        pose = self.decoded(source)
        if fill is not None and fmt.name in fill.formats:
            image = fill.ai.render(
                fmt,
                pose.image,
                subject=pose.subject,
                cut=pose.cut if pose.cut is not None else cut_sides(pose.mask, pose.subject),
                cutout=pose.cutout if pose.background is not None else None,
                background_prompt=source.background_prompt,
            )
        else:
            image, _ = render_image(pose, fmt)
        # The stored file describes the decoded image only, never a render the same size as it.
        stored_png = pose.stored_png if image is pose.image else None
        encoded = encode_export(image, fmt, stored_png=stored_png)
        key = export_key(source.generation_id, source.pose_id, fmt, encoded.extension)
        if fill is not None:
            key = staged_key(key, fill.request_id)
        self.storage.write_bytes(key, encoded.data, content_type=encoded.content_type)
        return RenderedExport(
            pose_id=source.pose_id,
            format=fmt.name,
            key=key,
            file_type=encoded.file_type,
            width=image.width,
            height=image.height,
            bytes=len(encoded.data),
            quality=encoded.quality,
        )

    def decoded(self, source: ExportSource) -> DecodedPose:
        """The pose decoded, from this run's cache; one thread decodes, the others wait for it."""
        with self._lock:
            found = self._decoded.get(source.pose_id)
            if found is not None:
                self._decoded.move_to_end(source.pose_id)
                return found
            pose_lock = self._pose_locks.setdefault(source.pose_id, threading.RLock())
        with pose_lock:
            with self._lock:
                found = self._decoded.get(source.pose_id)
            if found is not None:
                return found
            decoded = self._decode(source)
            with self._lock:
                self._decoded[source.pose_id] = decoded
                while len(self._decoded) > self._cached_poses:
                    self._decoded.popitem(last=False)
            return decoded

    def _ensure_mask(self, source: ExportSource) -> bool:
        with self._lock:
            pose_lock = self._pose_locks.setdefault(source.pose_id, threading.RLock())
        with pose_lock:
            if self.storage.exists(source.mask_key):
                return False
            original = self._load(source.original_key)
            mask = segment(original)
            self.storage.write_bytes(source.mask_key, encode_png(mask), content_type="image/png")
            return True

    def _decode(self, source: ExportSource) -> DecodedPose:
        stored = self.storage.read_bytes(source.image_key)
        image = open_image(stored)
        stored_png = stored if stored.startswith(_PNG_SIGNATURE) else None
        if not self.storage.exists(source.mask_key):
            self._ensure_mask(source)
        mask = self._load(source.mask_key).convert("L")
        if mask.size != image.size:
            mask = mask.resize(image.size, Image.Resampling.LANCZOS)
        box = subject_box(mask)
        cut = cut_sides(mask, box)
        if source.background_key is None:
            return DecodedPose(image, mask, box, stored_png=stored_png, cut=cut)
        original = image if source.original_key == source.image_key else None
        original = original or self._load(source.original_key)
        if original.size != mask.size:
            original = original.resize(mask.size, Image.Resampling.LANCZOS)
        background = self._load(source.background_key)
        subject = cutout(original, mask)
        return DecodedPose(image, mask, box, subject, background, stored_png, cut)

    def _load(self, key: str) -> Image.Image:
        return open_image(self.storage.read_bytes(key))


_runs: dict[str, ExportRun] = {}
_runs_lock = threading.Lock()


def run_for(token: str, storage: Storage) -> ExportRun:
    """The process's ExportRun for a run token (a flow run id): the tasks of one flow run share
    decoded poses; a task retried in another process simply builds its own."""
    with _runs_lock:
        run = _runs.get(token)
        if run is None or run.storage is not storage:
            run = _runs[token] = ExportRun(storage)
        return run


def finish_run(token: str) -> None:
    with _runs_lock:
        _runs.pop(token, None)


# -- staged (paid) runs ---------------------------------------------------------------------------


def publish_staged(
    storage: Storage, rendered: Iterable[RenderedExport], request_id: uuid.UUID
) -> list[RenderedExport]:
    """Move a paid run's staged files to their export keys, once every file was made; the
    result points at the published keys. Each move is a copy then a delete, so a retry of a
    half-done publish copies what is still staged and finds the rest published."""
    published = []
    for item in rendered:
        final = published_key(item.key, request_id)
        if storage.exists(item.key):
            content_type = "image/png" if final.endswith(".png") else "image/jpeg"
            storage.write_bytes(final, storage.read_bytes(item.key), content_type=content_type)
            storage.delete(item.key)
        published.append(replace(item, key=final))
    return published


def discard_staged(storage: Storage, generation_id: uuid.UUID, request_id: uuid.UUID) -> int:
    """Delete whatever a failed paid run staged; how many files. Safe to call again."""
    keys = storage.list(staging_prefix(generation_id, request_id))
    for key in keys:
        storage.delete(key)
    return len(keys)


# -- ZIP ------------------------------------------------------------------------------------------


def write_zip(storage: Storage, entries: Iterable[tuple[str, str]], path: Path) -> int:
    """Write `(name in ZIP, storage key)` entries to a ZIP file; returns how many.

    Stored, not deflated: JPEG and PNG do not compress further, and storing is I/O-bound. One
    entry is in memory at a time (an export file is a few MB at most), never the whole ZIP.
    """
    stamp = datetime.now(UTC).timetuple()[:6]
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, key in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o644 << 16
            archive.writestr(info, storage.read_bytes(key))
            count += 1
    return count


def store_zip(storage: Storage, entries: Iterable[tuple[str, str]], key: str) -> int:
    """Build the ZIP in a temp file and upload it in one atomic write."""
    with tempfile.TemporaryDirectory(prefix="posegen-zip-") as folder:
        path = Path(folder) / "export.zip"
        count = write_zip(storage, entries, path)
        storage.write_file(key, path, content_type=ZIP_CONTENT_TYPE)
    return count


def store_generation_zip(
    storage: Storage, generation_id: uuid.UUID, entries: list[tuple[str, str]]
) -> str | None:
    """`exports/{generationId}/poses-{generationId}.zip`; None when there is nothing to put in."""
    if not entries:
        return None
    key = zip_key(generation_id)
    store_zip(storage, entries, key)
    return key


def iter_file(path: Path, *, delete: bool = True) -> Iterator[bytes]:
    """Chunks of a file for a streaming response; the file is removed once sent (or abandoned)."""
    try:
        with path.open("rb") as source:
            while chunk := source.read(_ZIP_CHUNK):
                yield chunk
    finally:
        if delete:
            path.unlink(missing_ok=True)
