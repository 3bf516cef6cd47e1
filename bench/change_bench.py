"""Background-change compute benchmark: posegen's pipeline versus plain rembg + Pillow.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/change_bench.py [--rounds 7] [--modes solid_color,upload] \\
        [--model u2netp_int8] [--threads]

One 1024x1536 photo of a person (scikit-image's astronaut, cropped to 2:3 and upscaled, with
mild noise so PNG sizes behave like a photo's). Both sides run in this process, interleaved
round by round, so a busy machine slows both alike; each prints median [min-max] and the
ratio of medians, and a per-round ratio (median of round-by-round ratios).

- rembg + Pillow (what a user would write): open the PNG, `rembg.remove(img, session=...)` with
  a session made by `rembg.new_session("u2netp")` (rembg's default options), composite it over
  the new background with Pillow, save a PNG (Pillow's default level). Also timed: open the PNG
  and `rembg.remove` alone (issue 7's target 1 compares with that).
- posegen: `pipeline.remove_background` → `build_background` → `composite_pose` on a local
  `Storage` in a temp folder, the pose's mask deleted before each round so it segments every time
  (a first change; later changes of the same pose reuse the mask), the output written to storage.

Also: each pipeline step alone, raw ONNX inference of both sessions, and the IoU of posegen's
mask against rembg's own (`only_mask=True`), thresholded at 128. `--model` picks posegen's model
(default: the `rembg_model` setting); rembg's side is always u2netp. `--threads` only times raw
inference under each onnxruntime threading choice, of u2netp and of `--model` when it differs.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import iou

from posegen.config import get_settings, reset_settings
from posegen.domain.background import BackgroundChange, PoseImages
from posegen.imaging import pipeline
from posegen.imaging.decoding import open_image
from posegen.imaging.segmentation import get_session, segment
from posegen.storage import Storage

COLOR = "#1E90FF"


def person_photo(width: int = 1024, height: int = 1536) -> Image.Image:
    """A photo-like RGB image of a person at the issue's reference size."""
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    crop_w = astronaut.height * width // height
    left = (astronaut.width - crop_w) // 2
    big = astronaut.crop((left, 0, left + crop_w, astronaut.height)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    noise = np.random.default_rng(0).normal(0, 1.5, (height, width, 3))
    pixels = np.clip(np.asarray(big, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def backdrop_photo(width: int, height: int) -> Image.Image:
    """An uploaded backdrop (scikit-image's coffee), a different size than the pose."""
    from skimage import data

    return Image.fromarray(data.coffee()).resize((width * 3 // 4, height * 3 // 4))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1000:7.0f} ms "
        f"[{min(values) * 1000:5.0f}-{max(values) * 1000:5.0f}]"
    )


class RembgSide:
    """What a user would write with rembg and Pillow."""

    def __init__(self) -> None:
        from rembg import new_session

        self.session = new_session("u2netp")

    def change(self, data: bytes, background: Image.Image | None) -> bytes:
        from rembg import remove

        image = Image.open(io.BytesIO(data)).convert("RGB")
        subject = remove(image, session=self.session)
        assert isinstance(subject, Image.Image)
        if background is None:
            backdrop = Image.new("RGBA", image.size, COLOR)
        else:
            backdrop = background.convert("RGBA").resize(image.size, Image.Resampling.LANCZOS)
        result = Image.alpha_composite(backdrop, subject).convert("RGB")
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        return buffer.getvalue()

    def cut_out(self, data: bytes) -> Image.Image:
        """`rembg.remove` alone: the subject on transparency, nothing composited or encoded."""
        from rembg import remove

        subject = remove(Image.open(io.BytesIO(data)).convert("RGB"), session=self.session)
        assert isinstance(subject, Image.Image)
        return subject

    def mask(self, image: Image.Image) -> Image.Image:
        from rembg import remove

        mask = remove(image, session=self.session, only_mask=True)
        assert isinstance(mask, Image.Image)
        return mask


class PosegenSide:
    """posegen's three compute steps on local storage, exactly as the flow's tasks call them."""

    def __init__(self, folder: Path, data: bytes, size: tuple[int, int], upload: bytes) -> None:
        self.storage = Storage(str(folder))
        pose_id, generation_id = uuid.uuid4(), uuid.uuid4()
        stem = f"poses/{generation_id}/{pose_id}"
        self.images = PoseImages(
            pose_id=pose_id,
            generation_id=generation_id,
            width=size[0],
            height=size[1],
            original_key=f"{stem}.png",
            mask_key=f"{stem}_mask.png",
            cutout_key=f"{stem}_cutout.png",
            background_key=f"{stem}_background.png",
            output_key=f"{stem}_bg.png",
        )
        self.storage.write_bytes(self.images.original_key, data)
        self.storage.write_bytes("uploads/backdrop.png", upload)
        self.changes = {
            "solid_color": BackgroundChange(background_mode="solid_color", background_color=COLOR),
            "upload": BackgroundChange(
                background_mode="upload", background_image_url="uploads/backdrop.png"
            ),
        }

    def forget_mask(self) -> None:
        for key in (self.images.mask_key, self.images.cutout_key):
            if self.storage.exists(key):
                self.storage.delete(key)
        forget = getattr(pipeline, "forget_cached", None)
        if forget is not None:
            forget()

    def change(self, mode: str, steps: dict[str, list[float]]) -> None:
        self.forget_mask()
        images, change = self.images, self.changes[mode]
        steps["remove_background"].append(
            timed(lambda: pipeline.remove_background(self.storage, images))
        )
        steps["build_background"].append(
            timed(lambda: pipeline.build_background(self.storage, images, change))
        )
        steps["composite_pose"].append(timed(lambda: pipeline.composite_pose(self.storage, images)))

    def output(self) -> Image.Image:
        return open_image(self.storage.read_bytes(self.images.output_key))


def inference(session: object, rounds: int) -> list[float]:
    inner = session.inner_session  # type: ignore[attr-defined]
    name = inner.get_inputs()[0].name
    tensor = np.random.default_rng(1).normal(0, 1, (1, 3, 320, 320)).astype(np.float32)
    inner.run(None, {name: tensor})
    return [timed(lambda: inner.run(None, {name: tensor})) for _ in range(rounds)]


def thread_sweep(rounds: int, models: tuple[str, ...]) -> None:
    """Raw inference under each onnxruntime threading choice, interleaved round by round; each
    model after the first also as a ratio to the first under the same choice."""
    import onnxruntime as ort

    from posegen.imaging.fetch_models import fetch_model

    tensor = np.random.default_rng(1).normal(0, 1, (1, 3, 320, 320)).astype(np.float32)
    sessions = {}
    for model in models:
        for threads in (1, 2):
            for spinning in ("1", "0"):
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
                session = ort.InferenceSession(
                    str(fetch_model(model)), options, providers=["CPUExecutionProvider"]
                )
                name = session.get_inputs()[0].name
                session.run(None, {name: tensor})
                sessions[(model, f"intra_op={threads} spinning={spinning}")] = (session, name)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, (session, name) in sessions.items():
            times[key].append(timed(lambda s=session, n=name: s.run(None, {n: tensor})))
    print("\nraw inference by onnxruntime threading (interleaved):")
    for (model, choice), values in times.items():
        line = f"   {model:<12} {choice:<24}: {summary(values)}"
        if model != models[0]:
            base = times[(models[0], choice)]
            per_round = [b / v for b, v in zip(base, values, strict=True)]
            line += (
                f"  {models[0]} / this {statistics.median(base) / statistics.median(values):.2f}x"
                f" (per-round {statistics.median(per_round):.2f}x)"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--modes", default="solid_color,upload")
    parser.add_argument("--threads", action="store_true", help="only the threading sweep")
    parser.add_argument("--model", help="posegen's model (rembg's side is always u2netp)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if args.model:
        os.environ["POSEGEN_REMBG_MODEL"] = args.model
        reset_settings()
    model = get_settings().rembg_model
    if args.threads:
        thread_sweep(args.rounds, tuple(dict.fromkeys(("u2netp", model))))
        return

    photo = person_photo()
    data = png_bytes(photo)
    upload = png_bytes(backdrop_photo(*photo.size))
    print(
        f"photo {photo.width}x{photo.height}, PNG {len(data) / 1e6:.1f} MB; cores "
        f"{os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}"
    )

    start = time.perf_counter()
    rembg_side = RembgSide()
    print(f"rembg.new_session('u2netp') (import + load): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    get_session()
    print(f"posegen get_session() ({model}): {time.perf_counter() - start:.2f} s")

    with tempfile.TemporaryDirectory(prefix="posegen-bench-") as folder:
        ours = PosegenSide(Path(folder), data, photo.size, upload)
        # Warm both sides (first-call allocations, caches) outside the timings.
        rembg_side.change(data, None)
        ours.change("solid_color", {k: [] for k in pipeline_steps()})

        for mode in modes:
            background = backdrop_photo(*photo.size) if mode == "upload" else None
            theirs: list[float] = []
            remove_alone: list[float] = []
            total: list[float] = []
            steps: dict[str, list[float]] = {k: [] for k in pipeline_steps()}
            for _ in range(args.rounds):
                theirs.append(timed(lambda b=background: rembg_side.change(data, b)))
                remove_alone.append(timed(lambda: rembg_side.cut_out(data)))
                before = {k: len(v) for k, v in steps.items()}
                total.append(timed(lambda m=mode, s=steps: ours.change(m, s)))
                assert all(len(v) == before[k] + 1 for k, v in steps.items())
            ratios = [t / o for t, o in zip(theirs, total, strict=True)]
            print(f"\n== {mode}: one change, {args.rounds} interleaved rounds")
            print(f"rembg.remove + Pillow composite + PNG : {summary(theirs)}")
            print(f"rembg.remove alone (decode + remove)  : {summary(remove_alone)}")
            print(f"posegen remove+build+composite (total): {summary(total)} ({model})")
            for name, values in steps.items():
                print(f"   {name:<34}: {summary(values)}")
            print(
                f"speed-up vs rembg: {statistics.median(theirs) / statistics.median(total):.2f}x "
                f"(median of per-round ratios {statistics.median(ratios):.2f}x)"
            )
            print(
                "speed-up vs rembg.remove alone: "
                f"{statistics.median(remove_alone) / statistics.median(total):.2f}x"
            )

        original = open_image(data)
        theirs_mask = rembg_side.mask(original)
        ours_mask = segment(original)
        mask_only_rembg = [timed(lambda: rembg_side.mask(original)) for _ in range(args.rounds)]
        mask_only_ours = [timed(lambda: segment(original)) for _ in range(args.rounds)]
        print(f"\nmask IoU posegen vs rembg only_mask (>=128): {iou(ours_mask, theirs_mask):.4f}")
        print(f"mask only: rembg.remove(only_mask) {summary(mask_only_rembg)}")
        print(f"mask only: posegen segment()       {summary(mask_only_ours)} ({model})")
        print(
            "mask only, rembg / posegen: "
            f"{statistics.median(mask_only_rembg) / statistics.median(mask_only_ours):.2f}x"
        )
        theirs_run = inference(rembg_side.session, args.rounds)
        ours_run = inference(get_session(), args.rounds)
        print(f"raw 320x320 inference, rembg default session: {summary(theirs_run)}")
        print(f"raw 320x320 inference, posegen session      : {summary(ours_run)} ({model})")
        print(
            "raw inference, rembg / posegen: "
            f"{statistics.median(theirs_run) / statistics.median(ours_run):.2f}x"
        )
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (machine shared with other work)")


def pipeline_steps() -> tuple[str, ...]:
    return ("remove_background", "build_background", "composite_pose")


if __name__ == "__main__":
    main()
