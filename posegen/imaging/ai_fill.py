"""AI fill of an export frame: an unchanged photo outpainted by FLUX to the format, or an AI
background generated again at the format's aspect, with the subject placed as every export does.

Both keep the export's rules: the subject's box is placed by `plan_framing` (whole, inside the
safe area, cut sides on the frame's edge, marketplace coverage), and the frame is filled edge to
edge. An expand sends FLUX the photo as placed (at most `EXPAND_WORK_SIDE` pixels across the
frame, so any format stays within BFL's limits) and keeps only the new margins from its answer:
the photo itself is pasted back at full resolution, feathered over a few pixels where it meets
the new pixels, so the join never shows as a line.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from PIL import Image

from posegen.domain.exports import ExportFormat
from posegen.errors import PermanentError
from posegen.imaging.decoding import open_image
from posegen.imaging.reframe import (
    Box,
    Framing,
    plan_framing,
    render_recomposited,
    resample_region,
)

if TYPE_CHECKING:  # posegen.flux (httpx) is imported where a request is made
    from posegen.flux import FluxClient

# The expanded canvas FLUX is asked for is at most this long on its longer side; its margins
# are scaled up to the frame (they are background, and soft anyway), the photo is not.
EXPAND_WORK_SIDE: Final = 1440
# The photo fades into the new margins over this share of the frame's shorter side.
_FEATHER_SHARE: Final = 0.012


@dataclass(frozen=True)
class AiFill:
    """How one export run asks FLUX: `client` makes a client (one per request, closed after),
    `before_request` runs before each request (the Prefect rate limit around FLUX calls)."""

    client: Callable[[], FluxClient]
    before_request: Callable[[], None] = lambda: None

    def render(
        self,
        fmt: ExportFormat,
        image: Image.Image,
        *,
        subject: Box | None,
        cut: frozenset[str],
        cutout: Image.Image | None = None,
        background_prompt: str | None = None,
    ) -> Image.Image:
        """`fmt` filled by FLUX: the cut-out over a new AI background when the pose has one
        (`cutout` and `background_prompt`), else the photo expanded to the frame."""
        expanding = cutout is None
        framing = fill_framing(fmt, image.size, subject, cut, expanding=expanding)
        if expanding:
            return expand_to_frame(framing, image, self._expand)
        if not background_prompt:
            raise PermanentError("This pose's background has no prompt to draw it again.")
        background = self._background(background_prompt, framing.frame)
        return render_recomposited(framing, cutout, background)

    def _background(self, prompt: str, frame: tuple[int, int]) -> Image.Image:
        from posegen.flux import background_prompt, flux_dimensions

        width, height = flux_dimensions(*frame)
        self.before_request()
        with self.client() as flux:
            data = flux.generate(background_prompt(prompt), width, height)
        return open_image(data).convert("RGB")

    def _expand(self, image_png: bytes, top: int, bottom: int, left: int, right: int) -> bytes:
        self.before_request()
        with self.client() as flux:
            return flux.expand(image_png, top=top, bottom=bottom, left=left, right=right)


Expand = Callable[[bytes, int, int, int, int], bytes]


def fill_framing(
    fmt: ExportFormat,
    size: tuple[int, int],
    subject: Box | None,
    cut: frozenset[str],
    *,
    expanding: bool,
) -> Framing:
    """Where an AI-filled format puts the photo: an expand keeps the whole photo (contain, all
    of it stays the seller's own pixels); a new background covers the frame like any export."""
    return plan_framing(
        size,
        subject,
        fmt.frame_size(size),
        fmt.safe_area,
        fmt.min_subject_coverage,
        cut=cut,
        contain=expanding,
    )


def expand_to_frame(framing: Framing, image: Image.Image, expand: Expand) -> Image.Image:
    """The photo placed per `framing`, the rest of the frame outpainted by `expand` (PNG bytes
    and the pixels to add on top, bottom, left, right → the expanded image's encoded bytes)."""
    frame_w, frame_h = framing.frame
    placed = framing.image_box
    x0, y0 = max(0, round(placed.left)), max(0, round(placed.top))
    x1, y1 = min(frame_w, round(placed.right)), min(frame_h, round(placed.bottom))
    visible = resample_region(framing, image.convert("RGB"), (x0, y0, x1, y1))
    if (x0, y0, x1, y1) == (0, 0, frame_w, frame_h):
        return visible
    factor = min(1.0, EXPAND_WORK_SIDE / max(frame_w, frame_h))
    work_w, work_h = max(1, round(frame_w * factor)), max(1, round(frame_h * factor))
    left, top = round(x0 * factor), round(y0 * factor)
    small_w = max(1, min(work_w - left, round((x1 - x0) * factor)))
    small_h = max(1, min(work_h - top, round((y1 - y0) * factor)))
    small = visible.resize((small_w, small_h), Image.Resampling.LANCZOS)
    right, bottom = work_w - left - small_w, work_h - top - small_h
    data = expand(_png(small), top, bottom, left, right)
    grown = open_image(data).convert("RGB")
    expected = (small_w + left + right, small_h + top + bottom)
    if abs(grown.width - expected[0]) > 32 or abs(grown.height - expected[1]) > 32:
        raise PermanentError(
            f"FLUX returned a {grown.width}x{grown.height} image for a {expected[0]}x"
            f"{expected[1]} expansion."
        )
    canvas = grown.resize(framing.frame, Image.Resampling.BICUBIC)
    margins = {"left": x0 > 0, "top": y0 > 0, "right": x1 < frame_w, "bottom": y1 < frame_h}
    feather = max(2, round(_FEATHER_SHARE * min(framing.frame)))
    canvas.paste(visible, (x0, y0), _feathered(visible.size, margins, feather))
    return canvas


def _feathered(size: tuple[int, int], sides: dict[str, bool], width: int) -> Image.Image:
    """Alpha for the photo: opaque, ramping to transparent over `width` px at the sides that
    meet new pixels (the others touch the frame's edge and stay hard)."""
    w, h = size
    ramp_x, ramp_y = np.ones(w, np.float32), np.ones(h, np.float32)
    steps = (np.arange(width, dtype=np.float32) + 0.5) / width
    n_x, n_y = min(width, w // 2), min(width, h // 2)
    if sides["left"]:
        ramp_x[:n_x] = np.minimum(ramp_x[:n_x], steps[:n_x])
    if sides["right"]:
        ramp_x[w - n_x :] = np.minimum(ramp_x[w - n_x :], steps[:n_x][::-1])
    if sides["top"]:
        ramp_y[:n_y] = np.minimum(ramp_y[:n_y], steps[:n_y])
    if sides["bottom"]:
        ramp_y[h - n_y :] = np.minimum(ramp_y[h - n_y :], steps[:n_y][::-1])
    alpha = np.outer(ramp_y, ramp_x) * 255.0 + 0.5
    return Image.fromarray(alpha.astype(np.uint8), "L")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
