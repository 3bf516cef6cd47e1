"""A full-frame backdrop made from a photo's own background: the subject's hole filled, the
photo extended past its edges, blurred; all of it computed small (it is low frequencies only).

The fill is a push-pull pyramid (Gortler et al.'s "pull-push"): the known pixels are averaged
down a pyramid of halvings, weighted by how much of each cell is known, and on the way back up
each level keeps what it knows and takes the rest from the smoother level below. Holes and
the area beyond the photo get colours that continue smoothly from their borders, with no seam
where known pixels end; a Gaussian blur then turns it into an out-of-focus backdrop. NumPy and
Pillow only.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image, ImageFilter

# Mask values at or above this are excluded from the known background (the subject and the
# halo around it), after growing the mask by a pixel or two at the work size.
_HOLE_THRESHOLD: Final = 12
_EPSILON: Final = 1e-6


def fill_holes(colour: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`colour` (h, w, c float) with every pixel where `known` (h, w, 0..1) is below 1 filled
    smoothly from the known ones; known pixels keep their colour exactly. Nothing known: grey."""
    if not known.any():
        return np.full_like(colour, 128.0)
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    weighted, weight = colour * known[..., None], known.astype(np.float32)
    while True:
        levels.append((weighted, weight))
        if min(weight.shape) <= 2:
            break
        weighted, weight = _halve(weighted), _halve(weight)
    weighted, weight = levels[-1]
    total = weight.sum()
    estimate = np.broadcast_to(
        weighted.reshape(-1, colour.shape[2]).sum(axis=0) / max(total, _EPSILON), weighted.shape
    ).astype(np.float32)
    for weighted, weight in reversed(levels):
        coarse = _upsample(estimate, weight.shape)
        mine = weighted / np.maximum(weight, _EPSILON)[..., None]
        keep = np.clip(weight, 0.0, 1.0)[..., None]
        estimate = keep * mine + (1.0 - keep) * coarse
    return estimate


def _halve(array: np.ndarray) -> np.ndarray:
    """2x2 means; an odd last row or column is repeated so every cell has four samples."""
    if array.shape[0] % 2:
        array = np.concatenate([array, array[-1:]], axis=0)
    if array.shape[1] % 2:
        array = np.concatenate([array, array[:, -1:]], axis=1)
    return (array[0::2, 0::2] + array[1::2, 0::2] + array[0::2, 1::2] + array[1::2, 1::2]) / 4


def _upsample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear 2x (cell centres aligned), cut to `shape`: smooth, so no blocks show."""
    height, width = shape[0], shape[1]
    ys = (np.arange(height, dtype=np.float32) + 0.5) / 2 - 0.5
    xs = (np.arange(width, dtype=np.float32) + 0.5) / 2 - 0.5
    ys = np.clip(ys, 0, array.shape[0] - 1)
    xs = np.clip(xs, 0, array.shape[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, array.shape[0] - 1), np.minimum(x0 + 1, array.shape[1] - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = array[y0][:, x0] * (1 - fx) + array[y0][:, x1] * fx
    bottom = array[y1][:, x0] * (1 - fx) + array[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def backdrop(
    photo: Image.Image,
    mask: Image.Image,
    position: tuple[int, int],
    size: tuple[int, int],
    blur: float,
) -> Image.Image:
    """An RGB backdrop of `size` from `photo` (RGB, already at this small work size) placed at
    `position` (may be negative or leave parts of the canvas uncovered) with its subject `mask`
    (same size as `photo`): background kept, hole and outside filled, then blurred by `blur` px.
    """
    width, height = size
    colour = np.zeros((height, width, 3), dtype=np.float32)
    known = np.zeros((height, width), dtype=np.float32)
    grown = mask.convert("L").filter(ImageFilter.MaxFilter(3))
    pixels = np.asarray(photo.convert("RGB"), dtype=np.float32)
    background = (np.asarray(grown) < _HOLE_THRESHOLD).astype(np.float32)
    x, y = position
    src_x0, src_y0 = max(0, -x), max(0, -y)
    dst_x0, dst_y0 = max(0, x), max(0, y)
    span_w = min(photo.width - src_x0, width - dst_x0)
    span_h = min(photo.height - src_y0, height - dst_y0)
    if span_w > 0 and span_h > 0:
        colour[dst_y0 : dst_y0 + span_h, dst_x0 : dst_x0 + span_w] = pixels[
            src_y0 : src_y0 + span_h, src_x0 : src_x0 + span_w
        ]
        known[dst_y0 : dst_y0 + span_h, dst_x0 : dst_x0 + span_w] = background[
            src_y0 : src_y0 + span_h, src_x0 : src_x0 + span_w
        ]
    if not known.any() and span_w > 0 and span_h > 0:
        # All subject (a tight crop): fall back to the photo itself, blurred, as its backdrop.
        known[dst_y0 : dst_y0 + span_h, dst_x0 : dst_x0 + span_w] = 1.0
    filled = fill_holes(colour, known)
    image = Image.fromarray(np.clip(filled + 0.5, 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else image
