"""Export benchmark: 20 poses x 7 formats through the `multi-format-export` flow, versus the naive
Pillow export and libvips' `vipsthumbnail` CLI, on the same stored files, in one process.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/export_bench.py [--poses 20] [--rounds 3] [--spans] [--skip vips,...]

Sources: 1024x1536 photos of a person (scikit-image's astronaut, cropped to 2:3 and upscaled,
each pose with its own mild noise), imported as a generation into an embedded SQLite app
database and local storage in a temp folder, each with the mask u2netp gives it (computed once:
exports of a changed pose reuse its mask; segmentation is not what is measured). Every side reads
the same stored PNG files and writes files; sides run interleaved, round by round, so a busy
machine slows them alike. Medians [min-max], ratios of medians and per-round ratios are printed.

- naive Pillow, PNG: the issue's baseline. Per pose and format: `Image.open` → `ImageOps.fit`
  (cover, centre crop, Lanczos) to the format's size → `save(PNG)` with Pillow's defaults;
  `original` is open → save PNG. One thread.
- naive Pillow, JPEG: the previous bench's cheaper baseline (open → stretch with Lanczos → JPEG
  at the format's quality, PNG for `original`). Kept for comparison with bench/RESULTS.md history.
- vipsthumbnail: the libvips CLI doing the six resizes alone (no `original`), as a user would
  script it: one `vipsthumbnail <all poses> --size WxH --smartcrop centre -o …jpg[Q=q]` process
  per format (libvips threads inside). Skipped when the command is missing
  (`apt-get install libvips-tools`).
- posegen, flow: `multi_format_export(generation, all 7 formats)` in this process against a
  temporary Prefect server (`prefect_test_harness`, SQLite): plan, render, store, record on the
  poses, ZIP, artifact, event — what a user waits for.
- posegen, in-process: the same renders (`ExportRun.export_pose` on the flow's thread count)
  without Prefect, the database or the ZIP: the part of the flow that is image work.

`--spans`: per format, render and encode milliseconds of one pose (one thread), and the flow's
task runs by name (count, summed run time) for where the flow's time goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness import isolated_home  # noqa: E402

_HOME = isolated_home("posegen-export-bench-")
# Task and flow run logs still go to the API at INFO, as in production; not to the terminal.
os.environ.update(
    {
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "WARNING",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "WARNING",
    }
)

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from posegen.domain.exports import FORMATS, ExportFormat  # noqa: E402

FORMAT_NAMES = list(FORMATS)
OUT = _HOME / "out"


# -- inputs ---------------------------------------------------------------------------------------


def import_poses(count: int) -> tuple[uuid.UUID, list[uuid.UUID], list[Path]]:
    """A generation of `count` person photos with their masks; (generation, poses, PNG files)."""
    from change_bench import person_photo

    from posegen.db.migrate import upgrade
    from posegen.db.session import session_scope
    from posegen.domain.background import pose_images
    from posegen.domain.export_records import record_mask
    from posegen.domain.poses import import_generation
    from posegen.domain.users import create_user
    from posegen.imaging.encoding import encode_png
    from posegen.imaging.segmentation import segment
    from posegen.storage import get_storage

    upgrade(os.environ["POSEGEN_DATABASE_URL"])
    storage = get_storage()
    person = np.asarray(person_photo(), dtype=np.int16)
    mask = encode_png(segment(Image.fromarray(person.astype(np.uint8))))
    photos = []
    for index in range(count):
        noise = np.random.default_rng(index + 1).integers(-2, 3, person.shape, dtype=np.int16)
        pixels = np.clip(person + noise, 0, 255).astype(np.uint8)
        photos.append(encode_png(Image.fromarray(pixels)))
    with session_scope() as session:
        user = create_user(session, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        generation = import_generation(session, storage, user.id, photos)
        generation_id, pose_ids = generation.id, [pose.id for pose in generation.poses]
        files = []
        for pose in generation.poses:
            key = pose_images(session, pose.id).mask_key
            storage.write_bytes(key, mask, content_type="image/png")
            record_mask(session, pose.id, key)
            path = storage.local_path(pose.image_key)
            assert path is not None
            files.append(path)
    return generation_id, pose_ids, files


# -- the sides ------------------------------------------------------------------------------------


def naive_png(files: list[Path], formats: list[ExportFormat]) -> int:
    """The issue's baseline: open → fit → PNG per format, Pillow's defaults."""
    written = 0
    for index, path in enumerate(files):
        for fmt in formats:
            out = OUT / "naive" / f"{index}-{fmt.slug}.png"
            with Image.open(path) as image:
                if fmt.width and fmt.height:
                    fitted = ImageOps.fit(image, (fmt.width, fmt.height), Image.Resampling.LANCZOS)
                    fitted.save(out, format="PNG")
                else:
                    image.save(out, format="PNG")
            written += out.stat().st_size
    return written


def naive_jpeg(files: list[Path], formats: list[ExportFormat]) -> int:
    """The previous bench's baseline: open → stretch (Lanczos) → JPEG, PNG for `original`."""
    written = 0
    for index, path in enumerate(files):
        for fmt in formats:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            if fmt.width and fmt.height:
                out = OUT / "naive" / f"{index}-{fmt.slug}.jpg"
                image = image.resize((fmt.width, fmt.height), Image.Resampling.LANCZOS)
                image.save(out, format="JPEG", quality=fmt.jpeg_quality)
            else:
                out = OUT / "naive" / f"{index}-{fmt.slug}.png"
                image.save(out, format="PNG")
            written += out.stat().st_size
    return written


def vipsthumbnail(files: list[Path], formats: list[ExportFormat]) -> int:
    """One `vipsthumbnail` process per size over every pose: the CLI doing the resizes alone."""
    folder = OUT / "vips"
    for fmt in formats:
        if not (fmt.width and fmt.height):
            continue
        subprocess.run(
            [
                "vipsthumbnail",
                *map(str, files),
                "--size",
                f"{fmt.width}x{fmt.height}",
                "--smartcrop",
                "centre",
                "-o",
                f"{folder}/%s_{fmt.slug}.jpg[Q={fmt.jpeg_quality}]",
            ],
            check=True,
        )
    return sum(path.stat().st_size for path in folder.iterdir())


def posegen_flow(generation_id: uuid.UUID, formats: list[str]) -> tuple[int, uuid.UUID]:
    from flows.export import multi_format_export
    from posegen.domain.export_requests import ExportRequest

    state = multi_format_export(generation_id, ExportRequest(formats=formats), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert not result["failedPoseIds"], result
    return _exported_bytes(generation_id), state.state_details.flow_run_id


def posegen_in_process(pose_ids: list[uuid.UUID], formats: list[str], workers: int) -> int:
    """The flow's image work alone: one export run, every pose on the flow's thread count."""
    from posegen.db.session import session_scope
    from posegen.domain.export_records import sources_for
    from posegen.domain.exports import resolve_format
    from posegen.imaging.exporting import ExportRun
    from posegen.storage import get_storage

    with session_scope() as session:
        sources = sources_for(session, pose_ids)
    run = ExportRun(get_storage())
    specs = [resolve_format(name) for name in formats]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda source: run.export_pose(source, specs), sources))
    return sum(item.bytes for result in results for item in result.rendered)


def _exported_bytes(generation_id: uuid.UUID) -> int:
    from posegen.storage import get_storage

    storage = get_storage()
    return sum(
        storage.size(key)
        for key in storage.list(f"exports/{generation_id}/")
        if not key.endswith(".zip")
    )


# -- checks and attribution -----------------------------------------------------------------------


def check_outputs(generation_id: uuid.UUID, pose_ids: list[uuid.UUID]) -> None:
    """Every pose has every format, at its size, under its byte limit, with its dpi and sRGB."""
    import io

    from posegen.db.models import Pose
    from posegen.db.session import session_scope
    from posegen.storage import get_storage

    storage = get_storage()
    with session_scope() as session:
        for pose_id in pose_ids:
            pose = session.get(Pose, pose_id)
            assert pose is not None and sorted(pose.export_formats) == sorted(FORMAT_NAMES)
            for name, key in pose.export_formats.items():
                fmt, data = FORMATS[name], storage.read_bytes(key)
                with Image.open(io.BytesIO(data)) as image:
                    assert image.size == fmt.frame_size((pose.width, pose.height)), (name, key)
                    assert image.info.get("icc_profile"), key
                    if fmt.dpi:
                        assert tuple(round(v) for v in image.info["dpi"]) == (fmt.dpi, fmt.dpi)
                assert fmt.max_bytes is None or len(data) <= fmt.max_bytes, key
    assert storage.exists(f"exports/{generation_id}/poses-{generation_id}.zip")


def task_runs(flow_run_id: uuid.UUID) -> dict[str, tuple[int, float]]:
    """Task runs of one flow run by name: (count, summed run seconds)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import TaskRun

    runs: list[TaskRun] = []
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
            offset=len(runs),
        ):
            runs.extend(page)
    totals: dict[str, tuple[int, float]] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        count, seconds = totals.get(name, (0, 0.0))
        totals[name] = (count + 1, seconds + run.total_run_time.total_seconds())
    return totals


def spans(files: list[Path], formats: list[ExportFormat]) -> None:
    """Milliseconds of each step of one pose's export, one thread: medians over 5 poses."""
    from posegen.imaging.decoding import open_image
    from posegen.imaging.encoding import encode_export
    from posegen.imaging.exporting import DecodedPose, render_image
    from posegen.imaging.reframe import subject_box

    times: dict[str, list[float]] = {}

    @contextmanager
    def span(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        times.setdefault(name, []).append((time.perf_counter() - start) * 1000)

    for path in files[:5]:
        with span("read + decode source"):
            data = path.read_bytes()
            image = open_image(data)
        with span("decode mask + subject box"):
            mask = open_image(path.with_name(f"{path.stem}_mask.png").read_bytes()).convert("L")
            box = subject_box(mask)
        pose = DecodedPose(image, mask, box, stored_png=data)
        for fmt in formats:
            with span(f"{fmt.name}: render"):
                framed, _ = render_image(pose, fmt)
            with span(f"{fmt.name}: encode"):
                encode_export(framed, fmt, stored_png=data if framed is image else None)
    for name, values in times.items():
        print(f"   {name:<30} {statistics.median(values):6.0f} ms")
    total = sum(statistics.median(values) for values in times.values())
    print(f"   {'one pose, all steps':<30} {total:6.0f} ms")


# -- main -----------------------------------------------------------------------------------------


def _line(label: str, values: list[float], renders: int, written: int) -> str:
    middle = statistics.median(values)
    return (
        f"{label:<26}: {middle:6.2f} s [{min(values):.2f}-{max(values):.2f}] "
        f"({middle / renders * 1000:5.0f} ms/file, {written / 1e6:5.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--spans", action="store_true", help="per-format spans, task runs")
    parser.add_argument(
        "--skip", default="", help="sides to leave out: naive-png,naive-jpeg,vips,flow,in-process"
    )
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from posegen.config import get_settings

    formats = [FORMATS[name] for name in FORMAT_NAMES]
    generation_id, pose_ids, files = import_poses(args.poses)
    for folder in ("naive", "vips"):
        (OUT / folder).mkdir(parents=True, exist_ok=True)
    workers = get_settings().export_workers
    every: dict[str, tuple[str, Callable[[], int]]] = {
        "naive-png": ("naive Pillow, PNG", lambda: naive_png(files, formats)),
        "naive-jpeg": ("naive Pillow, JPEG (old)", lambda: naive_jpeg(files, formats)),
        "vips": ("vipsthumbnail, 6 sizes", lambda: vipsthumbnail(files, formats)),
        "flow": ("posegen, flow", lambda: flow_bytes()),
        "in-process": (
            "posegen, in-process",
            lambda: posegen_in_process(pose_ids, FORMAT_NAMES, workers),
        ),
    }
    skipped = set(filter(None, args.skip.split(",")))
    if shutil.which("vipsthumbnail") is None:
        print("vipsthumbnail not found (apt-get install libvips-tools): side skipped")
        skipped.add("vips")
    sides = {label: run for key, (label, run) in every.items() if key not in skipped}
    flow_runs: list[uuid.UUID] = []

    def flow_bytes() -> int:
        written, run_id = posegen_flow(generation_id, FORMAT_NAMES)
        flow_runs.append(run_id)
        return written

    print(
        f"{args.poses} poses x {len(formats)} formats, sources 1024x1536 PNG, "
        f"export_workers={workers}, {os.cpu_count()} cores, {datetime.now():%Y-%m-%d %H:%M}"
    )
    times: dict[str, list[float]] = {name: [] for name in sides}
    written: dict[str, int] = {}
    # 300 s: on a shared two-core box under load 20 the temporary server can take minutes to start.
    with prefect_test_harness(server_startup_timeout=300):
        for round_index in range(args.rounds):
            for name, run in sides.items():
                start = time.perf_counter()
                written[name] = run()
                times[name].append(time.perf_counter() - start)
                print(f"   round {round_index + 1} {name}: {times[name][-1]:.2f} s", flush=True)
        if flow_runs:
            check_outputs(generation_id, pose_ids)
            print("flow outputs checked: sizes, byte limits, dpi, sRGB profile, ZIP")
        if args.spans and flow_runs:
            print("flow task runs (last round): count, summed run time")
            for name, (count, seconds) in sorted(task_runs(flow_runs[-1]).items()):
                print(f"   {name:<28} {count:4d} {seconds:7.2f} s")
    if args.spans:
        print("one pose, one thread (median of 5 poses):")
        spans(files, formats)

    renders = args.poses * len(formats)
    for name in sides:
        print(_line(name, times[name], renders, written[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for ours in ("posegen, flow", "posegen, in-process"):
        for theirs in ("naive Pillow, PNG", "vipsthumbnail, 6 sizes", "naive Pillow, JPEG (old)"):
            if ours in medians and theirs in medians:
                rounds = [b / a for a, b in zip(times[ours], times[theirs], strict=True)]
                print(
                    f"{ours} vs {theirs}: {medians[theirs] / medians[ours]:.2f}x faster "
                    f"(round by round {', '.join(f'{r:.2f}' for r in rounds)})"
                )
    shutil.rmtree(_HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
