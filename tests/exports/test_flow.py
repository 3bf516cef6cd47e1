"""The `multi-format-export` flow on the session's real Prefect server, local storage and S3."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import pytest
from PIL import Image

from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import zip_key
from posegen.events import EVENT_EXPORT_COMPLETED, EVENT_EXPORT_FAILED
from posegen.storage import get_storage
from tests.events import wait_for_events
from tests.exports.conftest import load_pose, small_subject_png, store_exact_mask
from tests.flows.conftest import astronaut_png

pytestmark = pytest.mark.usefixtures("prefect_api")

FORMATS = ["instagram_feed", "shopee_product", "custom:200x300"]
SLUGS = ["instagram_feed", "shopee_product", "custom-200x300"]


def run_export(generation_id: uuid.UUID, formats: list[str], pose_ids: Any = None) -> Any:
    from flows.export import multi_format_export

    request = ExportRequest(formats=formats, pose_ids=pose_ids)
    return multi_format_export(generation_id, request, return_state=True)


def read_artifact(key: str) -> list[dict[str, Any]]:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=5
        )
    assert artifacts, f"no artifact {key}"
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]


def test_one_corrupted_source_does_not_stop_the_others(
    generation_of, any_storage: str, prefect_api: str
) -> None:  # type: ignore[no-untyped-def]
    """Pose 1 is a real photo with no mask yet (segmented once, cached); pose 2 has its mask;
    pose 3's stored image is garbage. 1 and 2 export; the artifact and the event name 3."""
    fixture = generation_of([astronaut_png(128), small_subject_png(), small_subject_png()])
    photo, good, broken = fixture.pose_ids
    store_exact_mask(good)
    store_exact_mask(broken)
    storage = get_storage()
    storage.write_bytes(load_pose(broken).image_key, b"\x89PNG\r\n\x1a\n not really a png")

    state = run_export(fixture.generation_id, FORMATS)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["failedPoseIds"] == [str(broken)]

    for pose_id in (photo, good):
        pose = load_pose(pose_id)
        assert sorted(pose.export_formats) == sorted(FORMATS)
        for name, slug in zip(FORMATS, SLUGS, strict=True):
            key = pose.export_formats[name]
            assert key == f"exports/{fixture.generation_id}/{pose_id}/{slug}.jpg"
            assert storage.exists(key)
    assert load_pose(broken).export_formats == {}
    # The photo had no mask: it was segmented once, stored and recorded on the pose.
    photo_pose = load_pose(photo)
    assert photo_pose.mask_key is not None and storage.exists(photo_pose.mask_key)

    archive = zipfile.ZipFile(io.BytesIO(storage.read_bytes(zip_key(fixture.generation_id))))
    expected = {
        f"{pose_id}/pose-{pose_id}-{slug}.jpg" for pose_id in (photo, good) for slug in SLUGS
    }
    assert set(archive.namelist()) == expected
    for name in expected:
        assert Image.open(io.BytesIO(archive.read(name))).format == "JPEG"

    rows = read_artifact(f"export-{fixture.generation_id}")
    failed = [row for row in rows if row["status"] == "failed"]
    assert {row["pose"] for row in failed} == {str(broken)}
    assert "not an image" in failed[0]["error"]
    assert len([row for row in rows if row["status"] == "exported"]) == 6

    events = wait_for_events(
        prefect_api, EVENT_EXPORT_FAILED, f"posegen.generation.{fixture.generation_id}"
    )
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["failedPoseIds"] == [str(broken)]
    assert set(payload["exports"]) == {str(photo), str(good)}
    related = {r["prefect.resource.id"] for r in events[0]["related"]}
    assert f"posegen.user.{fixture.user_id}" in related


def test_subset_export_completes_and_emits_completed(generation_of, prefect_api: str) -> None:  # type: ignore[no-untyped-def]
    fixture = generation_of([small_subject_png(), small_subject_png()])
    first, second = fixture.pose_ids
    store_exact_mask(first)
    state = run_export(fixture.generation_id, ["original", "tiktok"], pose_ids=[first])
    assert state.is_completed(), state.message
    assert sorted(load_pose(first).export_formats) == ["original", "tiktok"]
    assert load_pose(second).export_formats == {}
    events = wait_for_events(
        prefect_api, EVENT_EXPORT_COMPLETED, f"posegen.generation.{fixture.generation_id}"
    )
    assert events and events[0]["payload"]["failedPoseIds"] == []


def test_every_pose_failing_fails_the_run(generation_of) -> None:  # type: ignore[no-untyped-def]
    fixture = generation_of([small_subject_png()])
    (pose_id,) = fixture.pose_ids
    store_exact_mask(pose_id)
    get_storage().write_bytes(load_pose(pose_id).image_key, b"garbage")
    state = run_export(fixture.generation_id, ["tiktok"])
    assert state.is_failed()


def test_a_transient_render_failure_is_retried(
    generation_of, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from posegen.errors import TransientError
    from posegen.imaging.exporting import ExportRun

    fixture = generation_of([small_subject_png()])
    store_exact_mask(fixture.pose_ids[0])
    render, calls = ExportRun.render, []

    def flaky(self: ExportRun, source: Any, fmt: Any, fill: Any = None) -> Any:
        calls.append(fmt.name)
        if len(calls) == 1:
            raise TransientError("Storage is unavailable, try again")
        return render(self, source, fmt, fill)

    monkeypatch.setattr(ExportRun, "render", flaky)
    state = run_export(fixture.generation_id, ["tiktok"])
    assert state.is_completed(), state.message
    assert state.result()["failedPoseIds"] == [] and calls == ["tiktok", "tiktok"]


def test_a_format_that_keeps_failing_costs_the_pose_only_that_format(
    generation_of, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """One task per pose: a retry re-renders only the failing format, and once the attempts
    are spent it is reported as that format's failure while the pose's other files are kept."""
    from posegen.imaging.exporting import ExportRun

    fixture = generation_of([small_subject_png()])
    (pose_id,) = fixture.pose_ids
    store_exact_mask(pose_id)
    render, calls = ExportRun.render, []

    def broken_tiktok(self: ExportRun, source: Any, fmt: Any, fill: Any = None) -> Any:
        calls.append(fmt.name)
        if fmt.name == "tiktok":
            raise RuntimeError("a bug in one format")
        return render(self, source, fmt, fill)

    monkeypatch.setattr(ExportRun, "render", broken_tiktok)
    state = run_export(fixture.generation_id, ["tiktok", "original"])
    assert state.is_completed(), state.message
    assert state.result()["failedPoseIds"] == [str(pose_id)]
    assert calls == ["tiktok", "original", "tiktok", "tiktok"]
    assert sorted(load_pose(pose_id).export_formats) == ["original"]
    rows = read_artifact(f"export-{fixture.generation_id}")
    assert [(row["format"], row["status"]) for row in rows] == [
        ("original", "exported"),
        ("tiktok", "failed"),
    ]
