"""Visual check sheet: u2netp and selfie cut-outs of the same photos, side by side, in one PNG.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/cutout_sheet.py [--out .posegen/cutout-sheet.png]

One row per photo: the original, the u2netp cut-out and the selfie cut-out over a solid colour,
and where the two masks disagree (grey: both say person; red: only u2netp; blue: only selfie),
with the mask IoU (threshold 128) in the row's label. Both through posegen's `segment()`, the
path a background change takes.

Photos: the project's people photos (`posegen/samples`), plus three made from them for the
cases the selfie model is said to fail on: two people side by side (a wide image, so the
landscape model; and squeezed to a square, so the square model), a small figure in a wide
landscape, and the landscape alone (no person).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import iou

from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.segmentation import segment

SAMPLES = Path(__file__).resolve().parents[1] / "posegen" / "samples"
PEOPLE_PHOTOS = ("astronaut.jpg", "astronaut-portrait.jpg", "cameraman.jpg")
COLOUR = (30, 144, 255)  # the README's example background colour, #1E90FF
ROW_HEIGHT = 256
LABEL_HEIGHT = 18


def photos() -> dict[str, Image.Image]:
    """Name → RGB photo: the samples of people, then the made-up hard cases."""
    samples = {name: Image.open(SAMPLES / name).convert("RGB") for name in PEOPLE_PHOTOS}
    astronaut, cameraman = samples["astronaut.jpg"], samples["cameraman.jpg"]
    backdrop = Image.open(SAMPLES / "backdrop.jpg").convert("RGB")

    two_people = Image.new("RGB", (1024, 512))
    two_people.paste(astronaut, (0, 0))
    two_people.paste(cameraman, (512, 0))
    # The same two people side by side in a square frame (so the square model).
    two_people_square = two_people.resize((512, 512), Image.Resampling.LANCZOS)

    # The cameraman photo shrunk to a 96 px high figure standing in the landscape.
    small_figure = backdrop.copy()
    figure = cameraman.resize((96, 96), Image.Resampling.LANCZOS)
    small_figure.paste(figure, (300, 330))

    return {
        **samples,
        "two people (astronaut | cameraman), 1024x512": two_people,
        "the same two people squeezed to 512x512": two_people_square,
        "small figure (cameraman 96 px) in backdrop.jpg": small_figure,
        "backdrop.jpg (no person)": backdrop,
    }


def over_colour(image: Image.Image, mask: Image.Image) -> Image.Image:
    return Image.composite(image, Image.new("RGB", image.size, COLOUR), mask)


def disagreement(u2netp: Image.Image, selfie: Image.Image) -> Image.Image:
    a, b = np.asarray(u2netp) >= 128, np.asarray(selfie) >= 128
    pixels = np.full((*a.shape, 3), 255, dtype=np.uint8)
    pixels[a & b] = (150, 150, 150)
    pixels[a & ~b] = (220, 40, 40)
    pixels[~a & b] = (40, 80, 220)
    return Image.fromarray(pixels)


def row(name: str, photo: Image.Image) -> tuple[Image.Image, str]:
    u2netp, selfie = segment(photo, model="u2netp"), segment(photo, model="selfie")
    score = iou(u2netp, selfie)
    cells = [photo, over_colour(photo, u2netp), over_colour(photo, selfie)]
    cells.append(disagreement(u2netp, selfie))
    width = round(photo.width * ROW_HEIGHT / photo.height)
    cells = [ImageOps.fit(cell, (width, ROW_HEIGHT), Image.Resampling.LANCZOS) for cell in cells]
    strip = Image.new("RGB", (4 * width + 3 * 4, ROW_HEIGHT + LABEL_HEIGHT), "white")
    for index, cell in enumerate(cells):
        strip.paste(cell, (index * (width + 4), LABEL_HEIGHT))
    label = (
        f"{name}: IoU {score:.3f}; person share u2netp {np.mean(np.asarray(u2netp) >= 128):.2f}, "
        f"selfie {np.mean(np.asarray(selfie) >= 128):.2f}"
    )
    ImageDraw.Draw(strip).text((2, 3), label, fill="black")
    return strip, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".posegen/cutout-sheet.png"))
    args = parser.parse_args()
    fetch_model("u2netp")
    fetch_model("selfie")

    header = (
        "original | u2netp over colour | selfie over colour | red: u2netp only, blue: selfie only"
    )
    strips = []
    for name, photo in photos().items():
        strip, label = row(name, photo)
        strips.append(strip)
        print(label)
    sheet = Image.new("RGB", (max(s.width for s in strips), 20 + sum(s.height + 8 for s in strips)))
    sheet.paste("white", (0, 0, sheet.width, sheet.height))
    ImageDraw.Draw(sheet).text((2, 4), header, fill="black")
    top = 20
    for strip in strips:
        sheet.paste(strip, (0, top))
        top += strip.height + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
