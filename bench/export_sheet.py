"""Visual check sheet: every export format of the cases that went wrong before, in one PNG.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/export_sheet.py [--out .posegen/export-sheet.png] [--height 240]

One row per case (`tests/exports/cases.py`: the sample photos, a half body cut at the bottom,
a full body, a wide landscape, a subject cut at a side; then some of them after a background
change: solid colour, uploaded image, a stored AI background), one column per format: the
source, every catalog format and a few custom sizes, each rendered at full size by the export
code (`render_image`), encoded as its file would be, decoded again and shrunk for the sheet.
`--ai-expand` adds the rows an `ai_expand` export gives (`posegen/imaging/ai_fill.py`) against
the fake BFL server of the tests: its "outpainting" only carries the photo's edges outwards,
softly, so these rows show where the photo and subject go and that the joins do not show, not
what real FLUX would draw.
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

from posegen.domain.exports import FORMATS, ExportFormat, needs_ai_fill, resolve_format  # noqa: E402
from posegen.imaging.ai_fill import AiFill  # noqa: E402
from posegen.imaging.encoding import encode_export  # noqa: E402
from posegen.imaging.exporting import DecodedPose, render_image  # noqa: E402
from posegen.imaging.reframe import cut_sides  # noqa: E402
from tests.exports import cases  # noqa: E402

AI_PROMPT = "a sunny beach at noon"

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


def ai_rows() -> list[tuple[str, DecodedPose]]:
    """The unchanged cases and the AI-background pose again, for their `ai_expand` renders."""
    out = [
        (f"AI expand (fake FLUX): {case.name}", cases.unchanged_pose(case)) for case in cases.CASES
    ]
    out.append(
        ("AI background again (fake FLUX gradient): portrait", cases.changed_pose(
            cases.BY_NAME["portrait"], cases.ai_background())),
    )  # fmt: skip
    return out


def render_cell(pose: DecodedPose, fmt: ExportFormat, fill: AiFill | None) -> Image.Image:
    """What the export of `fmt` gives: AI-filled where an `ai_expand` export would pay for it."""
    if fill is not None and needs_ai_fill(pose.image.size, fmt.frame_size(pose.image.size)):
        return fill.render(
            fmt,
            pose.image,
            subject=pose.subject,
            cut=pose.cut if pose.cut is not None else cut_sides(pose.mask, pose.subject),
            cutout=pose.cutout if pose.background is not None else None,
            background_prompt=AI_PROMPT,
        )
    image, _ = render_image(pose, fmt)
    return image


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
    parser.add_argument(
        "--ai-expand", action="store_true", help="add the ai_expand rows (fake FLUX server)"
    )
    args = parser.parse_args()
    fmts = formats()
    rendered: list[tuple[str, list[tuple[str, Image.Image]]]] = []
    started = time.perf_counter()
    plan = [(label, pose, None) for label, pose in rows()]
    server = None
    if args.ai_expand:
        from posegen.flux import FluxClient
        from tests.fake_bfl import FakeBFLServer

        server = FakeBFLServer().start()
        url, key = server.url, server.api_key
        fill = AiFill(lambda: FluxClient(url, key, poll_interval=0.01))
        plan += [(label, pose, fill) for label, pose in ai_rows()]
    for label, pose, fill in plan:
        cells = [("source", thumbnail(pose.image, args.height))]
        for fmt in fmts:
            image = render_cell(pose, fmt, fill)
            encoded = encode_export(image, fmt)
            file = Image.open(io.BytesIO(encoded.data))
            cell = thumbnail(file, args.height)
            if args.guides:
                guides(cell, fmt)
            cells.append((fmt.name, cell))
        rendered.append((label, cells))
        print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    if server is not None:
        server.stop()
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
