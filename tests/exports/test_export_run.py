"""`ExportRun.export_pose`: every format of a pose from one decode, failures per format, retries
that render only what is missing, and the stored PNG reused only for the image it holds."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from posegen.domain.exports import FORMATS, ExportSource, resolve_format
from posegen.errors import PermanentError, TransientError
from posegen.imaging.encoding import encode_png
from posegen.imaging.exporting import ExportRun
from posegen.storage import Storage
from tests.exports.conftest import synthetic_pose


def stored_pose(storage: Storage, image: Image.Image, mask: Image.Image) -> ExportSource:
    generation_id, pose_id = uuid.uuid4(), uuid.uuid4()
    stem = f"poses/{generation_id}/{pose_id}"
    storage.write_bytes(f"{stem}.png", encode_png(image))
    storage.write_bytes(f"{stem}_mask.png", encode_png(mask))
    return ExportSource(
        pose_id, generation_id, f"{stem}.png", f"{stem}.png", f"{stem}_mask.png", True, None
    )


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(str(tmp_path / "storage"))


@pytest.fixture
def source(storage: Storage) -> ExportSource:
    pose = synthetic_pose()
    return stored_pose(storage, pose.image, pose.mask)


def _failing(formats: dict[str, list[BaseException]], calls: list[str]) -> Any:
    """`ExportRun.render` raising, per format, the listed errors once each, then rendering."""
    render = ExportRun.render

    def flaky(self: ExportRun, source: ExportSource, fmt: Any, fill: Any = None) -> Any:
        calls.append(fmt.name)
        errors = formats.get(fmt.name)
        if errors:
            raise errors.pop(0)
        return render(self, source, fmt, fill)

    return flaky


def test_a_format_failing_for_good_is_reported_and_the_others_are_stored(
    storage: Storage, source: ExportSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        ExportRun, "render", _failing({"tiktok": [PermanentError("Too big.")]}, calls)
    )
    formats = [FORMATS["tiktok"], FORMATS["original"]]
    result = ExportRun(storage).export_pose(source, formats, may_retry=True)
    assert [item.format for item in result.rendered] == ["original"]
    assert [(f.format, f.error) for f in result.failures] == [("tiktok", "Too big.")]
    assert storage.exists(result.rendered[0].key)


def test_a_retry_renders_only_the_formats_still_missing(
    storage: Storage, source: ExportSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    errors: dict[str, list[BaseException]] = {"tiktok": [TransientError("Storage hiccup.")]}
    monkeypatch.setattr(ExportRun, "render", _failing(errors, calls))
    run, formats = ExportRun(storage), [FORMATS["tiktok"], FORMATS["original"]]
    with pytest.raises(TransientError):
        run.export_pose(source, formats, may_retry=True)
    result = run.export_pose(source, formats, may_retry=True)
    assert calls == ["tiktok", "original", "tiktok"]
    assert sorted(item.format for item in result.rendered) == ["original", "tiktok"]
    assert result.failures == ()


def test_without_retries_left_an_error_that_may_heal_is_that_formats_failure(
    storage: Storage, source: ExportSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    errors: dict[str, list[BaseException]] = {"tiktok": [RuntimeError("bug")]}
    monkeypatch.setattr(ExportRun, "render", _failing(errors, calls))
    formats = [FORMATS["tiktok"], FORMATS["original"]]
    result = ExportRun(storage).export_pose(source, formats, may_retry=False)
    assert [item.format for item in result.rendered] == ["original"]
    assert [f.error for f in result.failures] == ["Rendering failed on our side (RuntimeError)."]


def test_a_render_the_size_of_the_source_never_reuses_the_stored_file(storage: Storage) -> None:
    """A see-through pose exported at its own size is a PNG of *reframed* pixels: the stored
    PNG (same size, same mode) describes the source, so it must not stand in for the render."""
    pose = synthetic_pose((400, 400), (150, 100, 250, 350))
    see_through = pose.image.convert("RGBA")
    see_through.putalpha(pose.mask.point(lambda v: 255 if v else 40))
    source = stored_pose(storage, see_through, pose.mask)
    run = ExportRun(storage)
    # A format of the source's size whose coverage rule enlarges the subject.
    same_size = replace(resolve_format("custom:400x400"), min_subject_coverage=0.9)
    rendered = run.export_pose(source, [same_size, FORMATS["original"]]).rendered
    files = {item.format: storage.read_bytes(item.key) for item in rendered}
    framed = Image.open(io.BytesIO(files[same_size.name]))
    original = Image.open(io.BytesIO(files["original"]))
    assert framed.format == original.format == "PNG" and framed.size == original.size
    assert np.array_equal(np.asarray(original), np.asarray(see_through))
    assert not np.array_equal(np.asarray(framed), np.asarray(see_through))
