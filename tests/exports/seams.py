"""A measurable seam: a straight row or column of an image where most pixels jump sharply.

That is what a photo boxed over a flat band, a hard edge of a blurred smear, or a cut-out's cut
edge floating inside a frame leave behind, and what a photo of a scene almost never has. The jump
is measured across two pixels (a resampled edge spreads over about two), on luma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Luma difference (0-255) across two pixels that counts as a sharp jump.
JUMP = 24.0
# Share of a row's (column's) pixels that must jump for it to be a seam.
SHARE = 0.5


@dataclass(frozen=True)
class Seam:
    axis: str  # "row" (a horizontal line) or "column"
    index: int  # the row (column) the jump happens at
    share: float

    def __str__(self) -> str:
        return f"{self.axis} {self.index} ({self.share:.0%} of its pixels jump)"


def seams(
    image: Image.Image,
    jump: float = JUMP,
    share: float = SHARE,
    ignore: Image.Image | None = None,
) -> list[Seam]:
    """Every seam of `image`, strongest first. `ignore` (an L image of the same size, non-zero
    where to look away: the placed subject and a rim around it) keeps the subject's own straight
    edges (a tripod leg, a box) from counting; a row that is mostly ignored has no seam."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    looked = np.ones(luma.shape, dtype=bool) if ignore is None else np.asarray(ignore) == 0
    found: list[Seam] = []
    if luma.shape[0] >= 3:
        jumps = np.abs(luma[2:] - luma[:-2]) > jump
        seen = looked[2:] & looked[:-2]
        found += _lines("row", jumps, seen, share, 1)
    if luma.shape[1] >= 3:
        jumps = np.abs(luma[:, 2:] - luma[:, :-2]) > jump
        seen = looked[:, 2:] & looked[:, :-2]
        found += _lines("column", jumps, seen, share, 0)
    return sorted(found, key=lambda seam: -seam.share)


def _lines(name: str, jumps: np.ndarray, seen: np.ndarray, share: float, axis: int) -> list[Seam]:
    length = jumps.shape[axis]
    counted = seen.sum(axis=axis)
    shares = (jumps & seen).sum(axis=axis) / np.maximum(counted, 1)
    # A line must be mostly looked at: at least a quarter of it, to be a seam of the backdrop.
    candidates = np.flatnonzero((shares >= share) & (counted >= length / 4))
    return [Seam(name, int(i) + 1, float(shares[i])) for i in candidates]


def placed_mask(mask: Image.Image, framing: object, rim: int = 2) -> Image.Image:
    """`mask` (the source's) where the framing puts it in the frame, grown by `rim` source
    pixels: the region `seams(..., ignore=)` should look away from."""
    from PIL import ImageFilter

    grown = mask.convert("L").point(lambda v: 255 if v >= 8 else 0)
    if rim:
        grown = grown.filter(ImageFilter.MaxFilter(2 * rim + 1))
    s = framing.scale  # type: ignore[attr-defined]
    ox, oy = framing.offset_x, framing.offset_y  # type: ignore[attr-defined]
    return grown.transform(
        framing.frame,  # type: ignore[attr-defined]
        Image.Transform.AFFINE,
        (1 / s, 0, -ox / s, 0, 1 / s, -oy / s),
        Image.Resampling.BILINEAR,
    ).point(lambda v: 255 if v > 0 else 0)


def new_seams(
    output: Image.Image,
    source: Image.Image,
    framing: object,
    mask: Image.Image | None = None,
) -> list[Seam]:
    """Seams of an export that its source lacks: a straight line the photo itself has (a
    horizon, a shuttle's edge) is allowed where the framing puts it; anything else is a defect.
    With `mask` (the source's subject mask) the subject's own edges are looked away from."""
    s = framing.scale  # type: ignore[attr-defined]
    offsets = {"row": framing.offset_y, "column": framing.offset_x}  # type: ignore[attr-defined]
    identity_ignore = None
    if mask is not None:
        from PIL import ImageFilter

        identity_ignore = mask.convert("L").point(lambda v: 255 if v >= 8 else 0)
        identity_ignore = identity_ignore.filter(ImageFilter.MaxFilter(5))
    # The source's lines, leniently (a line may cover less of a source row than of the frame's).
    own = seams(source, share=SHARE * 0.6, ignore=identity_ignore)
    tolerance = 2 * s + 2
    placed = [(seam.axis, offsets[seam.axis] + s * seam.index) for seam in own]
    ignore = placed_mask(mask, framing) if mask is not None else None
    return [
        seam
        for seam in seams(output, ignore=ignore)
        if not any(axis == seam.axis and abs(at - seam.index) <= tolerance for axis, at in placed)
    ]
