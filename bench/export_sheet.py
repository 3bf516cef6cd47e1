"""Visual check sheet: every export format of the cases that went wrong before, in one PNG.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/export_sheet.py [--out .posegen/export-sheet.png] [--height 240]

One row per case (`tests/exports/cases.py`: the sample photos, a half body cut at the bottom,
a full body, a wide landscape, a subject cut at a side; then some of them after a background
change: solid colour, uploaded image, a stored AI background), one column per format: the
source, every catalog format and a few custom sizes, each rendered at full size by the export
code (`render_image`), encoded as its file would be, decoded again and shrunk for the sheet.
`--guides` draws each format's safe area (thin lines) over the thumbnails; the copy in
`docs/screenshots/export-sheet.png` is `--height 128`, in full colour (a palette would band
the soft backdrops, which then look like smears they are not).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from posegen.domain.exports import FORMATS, ExportFormat, resolve_format  # noqa: E402
from posegen.imaging.encoding import encode_export  # noqa: E402
from posegen.imaging.exporting import DecodedPose, render_image  # noqa: E402
from tests.exports import cases  # noqa: E402

CUSTOM = ("custom:1200x628", "custom:1600x900", "custom:800x1200")
LABEL = 16
GAP = 6


def formats() -> list[ExportFormat]:
    framed = [fmt for fmt in FORMATS.values() if not fmt.keeps_source]
    return framed + [resolve_format(name) for name in CUSTOM]


def rows() -> list[tuple[str, DecodedPose]]:
    out = [(case.label, cases.unchanged_pose(case)) for case in cases.CASES]
    upload = cases.sample("backdrop.jpg")
    out += [
        ("changed: solid #1E90FF (half body)", cases.changed_pose(
            cases.BY_NAME["half-body"], cases.solid_background())),
        ("changed: upload backdrop.jpg (cameraman)", cases.changed_pose(
            cases.BY_NAME["cameraman"], upload)),
        ("changed: AI background 1440x1024 (portrait)", cases.changed_pose(
            cases.BY_NAME["portrait"], cases.ai_background())),
    ]  # fmt: skip
    return out


def thumbnail(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def guides(cell: Image.Image, fmt: ExportFormat) -> None:
    if fmt.width is None or fmt.height is None:
        return
    draw, scale = ImageDraw.Draw(cell), cell.height / fmt.height
    safe = fmt.safe_area
    box = (
        safe.left * scale,
        safe.top * scale,
        cell.width - 1 - safe.right * scale,
        cell.height - 1 - safe.bottom * scale,
    )
    draw.rectangle(box, outline=(255, 0, 255))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".posegen" / "export-sheet.png")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--guides", action="store_true")
    parser.add_argument(
        "--colours", type=int, default=0, help="quantize to N colours (a small copy for docs/)"
    )
    args = parser.parse_args()
    fmts = formats()
    rendered: list[tuple[str, list[tuple[str, Image.Image]]]] = []
    started = time.perf_counter()
    for label, pose in rows():
        cells = [("source", thumbnail(pose.image, args.height))]
        for fmt in fmts:
            image, _ = render_image(pose, fmt)
            encoded = encode_export(image, fmt)
            file = Image.open(io.BytesIO(encoded.data))
            cell = thumbnail(file, args.height)
            if args.guides:
                guides(cell, fmt)
            cells.append((fmt.name, cell))
        rendered.append((label, cells))
        print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    width = max(sum(cell.width + GAP for _, cell in cells) for _, cells in rendered) + GAP
    row_height = LABEL * 2 + args.height + GAP
    sheet = Image.new("RGB", (width, row_height * len(rendered) + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (label, cells) in enumerate(rendered):
        top = GAP + index * row_height
        draw.text((GAP, top), label, fill=(0, 0, 0))
        x = GAP
        for name, cell in cells:
            draw.text((x, top + LABEL), name, fill=(90, 90, 90))
            sheet.paste(cell, (x, top + 2 * LABEL))
            x += cell.width + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.colours:
        sheet = sheet.quantize(args.colours, method=Image.Quantize.MEDIANCUT)
    sheet.save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
