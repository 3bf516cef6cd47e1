"""The export cases that went wrong before issue 15, built from the sample photos: the rendering
tests and `bench/export_sheet.py` use the same ones. Masks come from the real model (u2netp
through `segment`), computed once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from posegen.imaging.exporting import DecodedPose
from posegen.imaging.reframe import cut_sides, subject_box

SAMPLES = Path(__file__).resolve().parents[2] / "posegen" / "samples"
SOLID = (30, 144, 255)  # the README's example colour, #1E90FF


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    build: str  # the function of this module that makes the photo

    def photo(self) -> Image.Image:
        return _photo(self.build)


def sample(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("RGB")


def _figure() -> tuple[Image.Image, Image.Image]:
    """The cameraman and his tripod, cut out of his photo: (RGB, mask), 512x512."""
    photo = sample("cameraman.jpg")
    return photo, mask_of(photo)


def astronaut() -> Image.Image:
    return sample("astronaut.jpg")


def portrait() -> Image.Image:
    return sample("astronaut-portrait.jpg")


def cameraman() -> Image.Image:
    return sample("cameraman.jpg")


def full_body() -> Image.Image:
    """A whole figure standing in a portrait landscape, clear of every edge."""
    scene = _scene((640, 960))
    figure, mask = _figure()
    height = 620
    figure = figure.resize((height, height), Image.Resampling.LANCZOS)
    mask = mask.resize((height, height), Image.Resampling.LANCZOS)
    # The photo's own bottom cuts the coat: fade the mask out over its last rows, so the figure
    # stands in the grass instead of ending on a straight line.
    fade = np.ones((height, 1), dtype=np.float32)
    fade[-60:, 0] = np.linspace(1.0, 0.0, 60)
    mask = Image.fromarray((np.asarray(mask, dtype=np.float32) * fade).astype(np.uint8))
    scene.paste(figure, (70, 240), mask)
    return scene


def wide_landscape() -> Image.Image:
    """A small figure in a wide (2.4:1) landscape."""
    scene = _scene((1200, 500))
    figure, mask = _figure()
    side = 300
    figure = figure.resize((side, side), Image.Resampling.LANCZOS)
    mask = mask.resize((side, side), Image.Resampling.LANCZOS)
    fade = np.ones((side, 1), dtype=np.float32)
    fade[-40:, 0] = np.linspace(1.0, 0.0, 40)
    mask = Image.fromarray((np.asarray(mask, dtype=np.float32) * fade).astype(np.uint8))
    scene.paste(figure, (420, 150), mask)
    return scene


def side_cut() -> Image.Image:
    """A person the photo cuts at its right side (and bottom): the astronaut's left 300 px."""
    return sample("astronaut.jpg").crop((0, 0, 300, 512))


def _scene(size: tuple[int, int]) -> Image.Image:
    from posegen.imaging.compositing import fit_cover

    return fit_cover(sample("backdrop.jpg"), size)


CASES: tuple[Case, ...] = (
    Case("half-body", "half body cut at the bottom (astronaut.jpg, 512x512)", "astronaut"),
    Case("portrait", "portrait bust (astronaut-portrait.jpg, 384x512)", "portrait"),
    Case("cameraman", "touching the left side and bottom (cameraman.jpg)", "cameraman"),
    Case("full-body", "full body, clear of every edge (640x960)", "full_body"),
    Case("wide", "wide landscape, small figure (1200x500)", "wide_landscape"),
    Case("side-cut", "cut at the right side (astronaut.jpg's left 300 px)", "side_cut"),
)
BY_NAME = {case.name: case for case in CASES}


@functools.cache
def _photo(build: str) -> Image.Image:
    return globals()[build]()


@functools.cache
def _mask(build: str) -> Image.Image:
    return mask_of(_photo(build))


def mask_of(photo: Image.Image) -> Image.Image:
    from posegen.imaging.segmentation import segment

    return segment(photo)


def unchanged_pose(case: Case) -> DecodedPose:
    photo, mask = case.photo(), _mask(case.build)
    box = subject_box(mask)
    return DecodedPose(photo, mask, box, cut=cut_sides(mask, box))


def changed_pose(case: Case, background: Image.Image) -> DecodedPose:
    """The case after a background change: its cut-out over `background` (stored as is)."""
    from posegen.imaging.compositing import composite
    from posegen.imaging.segmentation import cutout

    photo, mask = case.photo(), _mask(case.build)
    subject = cutout(photo, mask)
    box = subject_box(mask)
    return DecodedPose(
        composite(subject, background), mask, box, subject, background, cut=cut_sides(mask, box)
    )


def solid_background(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, SOLID)


def ai_background() -> Image.Image:
    """Stands in for a stored FLUX background: a full-resolution 1440x1024 scene (FLUX answers
    at the pose's aspect rounded to multiples of 32, which is not every format's): a warm
    studio wall with a soft light, meeting a darker floor in a soft line."""
    width, height = 1440, 1024
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(-1.0, 1.0, width)[None, :, None]
    wall = np.array([236, 214, 190]) - 60 * (x**2) - 30 * y
    floor = np.array([150, 120, 100]) - 20 * (x**2)
    blend = np.clip((y - 0.72) / 0.06, 0.0, 1.0)
    light = 40 * np.exp(-((x - 0.35) ** 2 + (y - 0.3) ** 2) / 0.08)
    pixels = wall * (1 - blend) + floor * blend + light
    return Image.fromarray(np.clip(pixels * np.ones((1, width, 1)), 0, 255).astype(np.uint8))
