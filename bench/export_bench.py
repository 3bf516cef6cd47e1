"""Export rendering benchmark: 20 poses x 7 formats through posegen's render code, versus a naive
Pillow baseline (open → resize → save, per format) on the same inputs in the same run.

    .venv/bin/python bench/export_bench.py [--poses 20] [--side 1200]

posegen decodes each pose once and derives every format from it (subject-aware framing, Lanczos,
quality search under byte limits, sRGB profile); the baseline decodes the source again for every
format and stretches it to size. Masks are given (segmentation is not what is measured here).
Both sides write to memory, not storage. Prints seconds for each and the ratio.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from posegen.domain.exports import FORMATS, ExportFormat
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_export
from posegen.imaging.exporting import DecodedPose, render_image
from posegen.imaging.reframe import subject_box


def make_poses(count: int, side: int) -> list[tuple[bytes, bytes]]:
    """(photo PNG, mask PNG) pairs: textured photos (so JPEG sizes are realistic) with a subject."""
    rng = np.random.default_rng(0)
    width, height = side, side * 4 // 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=20)
    parser.add_argument("--side", type=int, default=1200, help="source width in px")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    formats = list(FORMATS.values())
    poses = make_poses(args.poses, args.side)
    print(f"{args.poses} poses x {len(formats)} formats, sources {args.side}x{args.side * 4 // 3}")

    start = time.perf_counter()
    naive_bytes = sum(naive_pose(photo, formats) for photo, _ in poses)
    naive = time.perf_counter() - start

    start = time.perf_counter()
    ours_bytes = sum(posegen_pose(photo, mask, formats) for photo, mask in poses)
    ours = time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(lambda pose: posegen_pose(pose[0], pose[1], formats), poses))
    threaded = time.perf_counter() - start

    renders = args.poses * len(formats)
    print(
        f"naive Pillow baseline : {naive:6.2f} s ({naive / renders * 1000:5.0f} ms/render, "
        f"{naive_bytes / 1e6:.0f} MB)"
    )
    print(
        f"posegen, one thread   : {ours:6.2f} s ({ours / renders * 1000:5.0f} ms/render, "
        f"{ours_bytes / 1e6:.0f} MB)"
    )
    print(f"posegen, {args.workers} threads     : {threaded:6.2f} s")
    print(
        f"ratio posegen/naive (one thread): {ours / naive:.2f}x; "
        f"with {args.workers} threads: {threaded / naive:.2f}x"
    )


if __name__ == "__main__":
    main()
