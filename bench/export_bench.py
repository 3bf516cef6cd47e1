"""Export rendering benchmark: 20 poses x 7 formats through posegen's render code, versus a naive
Pillow baseline (open → resize → save, per format) and libvips (pyvips `thumbnail_buffer` with
centre crop → JPEG, PNG for `original`, what `vipsthumbnail` does) on the same inputs in the
same run.

    .venv/bin/python bench/export_bench.py [--poses 20] [--side 1200] [--height H] [--rounds 1]

posegen decodes each pose once and derives every format from it (subject-aware framing, Lanczos,
quality search under byte limits, sRGB profile); the baseline decodes the source again for every
format and stretches it to size. Masks are given (segmentation is not what is measured here).
Both sides write to memory, not storage. Prints seconds for each and the ratio; with
`--rounds N` every side runs N times, interleaved, and the medians [min-max] are printed.
libvips is skipped when pyvips is not installed (it is the `bench` extra).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from posegen.domain.exports import FORMATS, ExportFormat
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_export
from posegen.imaging.exporting import DecodedPose, render_image
from posegen.imaging.reframe import subject_box


def make_poses(count: int, side: int, height: int | None = None) -> list[tuple[bytes, bytes]]:
    """(photo PNG, mask PNG) pairs: textured photos (so JPEG sizes are realistic) with a subject."""
    rng = np.random.default_rng(0)
    width, height = side, height or side * 4 // 3
    poses = []
    for index in range(count):
        gradient = np.linspace(60, 200, width, dtype=np.float32)[None, :, None]
        noise = rng.normal(0, 18, (height, width, 3)).astype(np.float32)
        pixels = np.clip(gradient + noise + index, 0, 255).astype(np.uint8)
        photo = Image.fromarray(pixels)
        mask = Image.new("L", photo.size, 0)
        box = (width * 0.3, height * 0.12, width * 0.7, height * 0.95)
        ImageDraw.Draw(photo).ellipse(box, fill=(180, 40 + index, 30))
        ImageDraw.Draw(mask).ellipse(box, fill=255)
        poses.append((_png(photo), _png(mask)))
    return poses


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def posegen_pose(photo: bytes, mask_png: bytes, formats: list[ExportFormat]) -> int:
    image = open_image(photo)
    mask = open_image(mask_png).convert("L")
    pose = DecodedPose(image, mask, subject_box(mask))
    written = 0
    for fmt in formats:
        framed, _ = render_image(pose, fmt)
        written += len(encode_export(framed, fmt).data)
    return written


def naive_pose(photo: bytes, formats: list[ExportFormat]) -> int:
    written = 0
    for fmt in formats:
        image = Image.open(io.BytesIO(photo)).convert("RGB")
        if not fmt.keeps_source:
            assert fmt.width and fmt.height
            image = image.resize((fmt.width, fmt.height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        if fmt.keeps_source:
            image.save(buffer, format="PNG")
        else:
            image.save(buffer, format="JPEG", quality=fmt.jpeg_quality)
        written += len(buffer.getvalue())
    return written


def vips_pose(photo: bytes, formats: list[ExportFormat]) -> int:
    """libvips' thumbnailer per format: shrink-on-load, centre crop to the frame, JPEG/PNG."""
    import pyvips

    written = 0
    for fmt in formats:
        if fmt.keeps_source:
            data = pyvips.Image.new_from_buffer(photo, "").pngsave_buffer()
        else:
            assert fmt.width and fmt.height
            thumb = pyvips.Image.thumbnail_buffer(
                photo, fmt.width, height=fmt.height, crop="centre", size="both"
            )
            data = thumb.jpegsave_buffer(Q=fmt.jpeg_quality)
        written += len(data)
    return written


def _median_line(label: str, values: list[float], renders: int, written: int) -> str:
    middle = statistics.median(values)
    return (
        f"{label:<24}: {middle:6.2f} s [{min(values):.2f}-{max(values):.2f}] "
        f"({middle / renders * 1000:5.0f} ms/render, {written / 1e6:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=20)
    parser.add_argument("--side", type=int, default=1200, help="source width in px")
    parser.add_argument("--height", type=int, default=None, help="source height (default 4:3)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    formats = list(FORMATS.values())
    poses = make_poses(args.poses, args.side, args.height)
    height = args.height or args.side * 4 // 3
    print(f"{args.poses} poses x {len(formats)} formats, sources {args.side}x{height}")
    try:
        import pyvips  # noqa: F401

        has_vips = True
    except ImportError:
        has_vips = False

    def threaded_run() -> int:
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            return sum(pool.map(lambda pose: posegen_pose(pose[0], pose[1], formats), poses))

    sides: dict[str, Callable[[], int]] = {
        "naive Pillow baseline": lambda: sum(naive_pose(photo, formats) for photo, _ in poses),
        "posegen, one thread": lambda: sum(posegen_pose(p, m, formats) for p, m in poses),
        f"posegen, {args.workers} threads": threaded_run,
    }
    if has_vips:
        sides["libvips thumbnail"] = lambda: sum(vips_pose(photo, formats) for photo, _ in poses)
    times: dict[str, list[float]] = {name: [] for name in sides}
    written: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, run in sides.items():
            start = time.perf_counter()
            written[name] = run()
            times[name].append(time.perf_counter() - start)

    renders = args.poses * len(formats)
    for name in sides:
        print(_median_line(name, times[name], renders, written[name]))
    naive = statistics.median(times["naive Pillow baseline"])
    for name in list(sides)[1:]:
        print(
            f"speed-up of {name} over naive Pillow: {naive / statistics.median(times[name]):.2f}x"
        )
    if has_vips:
        vips = statistics.median(times["libvips thumbnail"])
        for name in list(sides)[1:3]:
            print(f"speed-up of {name} over libvips: {vips / statistics.median(times[name]):.2f}x")


if __name__ == "__main__":
    main()
