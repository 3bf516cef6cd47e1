"""Subject-aware reframing: where the subject is, where it goes in a frame, what fills the rest.

`plan_framing` is pure geometry (a scale and an offset); `render_framing` and
`render_recomposited` apply it. Every frame is filled edge to edge:

- The subject's box (from its mask) is kept whole, its content inside the format's safe area.
  A side where the photo itself cuts the subject (a bust cut at the bottom, a person at the
  photo's edge) is anchored to the frame's edge on that side, so the cut never floats inside
  the frame; it may pass through the safe area there (safe areas keep content clear of
  overlays, and a cut body is no content that an overlay could hide).
- Where the photo, so placed, covers the frame, the frame is a crop of it (one Lanczos
  resample of the visible region).
- Otherwise the sharp subject goes over a full-frame backdrop made from the photo's own
  background: the subject's hole filled, extended past the photo's edges and blurred
  (`posegen.imaging.backdrop`), so no rectangle of the photo shows.
- A changed pose's cut-out goes over its background cover-fitted to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from PIL import Image

from posegen.domain.exports import SafeArea
from posegen.imaging.backdrop import backdrop
from posegen.imaging.compositing import fit_cover

# Mask values at or above this are subject when measuring its box: soft fringes below it are
# hair and shadow halos, and including them would shrink every subject for a few faint pixels.
SUBJECT_THRESHOLD: Final = 64
# Breathing room kept around the subject (of its larger side), so it never sits on a cut edge.
_MARGIN_RATIO: Final = 0.03
_MIN_MARGIN: Final = 2.0
# A subject side is cut by the photo when this share of the photo's outermost rows (columns)
# there is subject: a stray pixel of mask at the border is not a cut body.
_CUT_SHARE: Final = 0.04
_CUT_DEPTH: Final = 2
# The backdrop is computed with this many pixels on the frame's longer side, and blurred by
# this share of it: out of focus enough to read as a backdrop, close enough to read as the scene.
_BACKDROP_WORK_SIDE: Final = 240
_BACKDROP_BLUR: Final = 0.016
# Mask values below this are left out of the subject layer entirely (its box is cut to them).
_LAYER_THRESHOLD: Final = 1
# A floating cut side fades out over this share of the frame's shorter side; the backdrop
# beyond it is extended from this share of the photo along that edge, subject included.
_FADE_SHARE: Final = 0.12
_FLOATING_KNOWN: Final = 0.03
SIDES: Final = ("left", "top", "right", "bottom")


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def inside(self, outer: Box) -> bool:
        return (
            self.left >= outer.left
            and self.top >= outer.top
            and self.right <= outer.right
            and self.bottom <= outer.bottom
        )


def subject_box(mask: Image.Image, threshold: int = SUBJECT_THRESHOLD) -> Box | None:
    """The bounding box of the mask's subject pixels, or None when there is no subject."""
    solid = mask.convert("L").point(lambda value: 255 if value >= threshold else 0)
    bbox = solid.getbbox()
    return Box(*map(float, bbox)) if bbox else None


def cut_sides(
    mask: Image.Image, box: Box | None, threshold: int = SUBJECT_THRESHOLD
) -> frozenset[str]:
    """The sides where the photo cuts the subject: its box reaches that edge of the photo and
    a real part of the photo's outermost rows (columns) there is subject."""
    if box is None:
        return frozenset()
    width, height = mask.size
    strips = {
        "left": (0, 0, _CUT_DEPTH, height),
        "top": (0, 0, width, _CUT_DEPTH),
        "right": (width - _CUT_DEPTH, 0, width, height),
        "bottom": (0, height - _CUT_DEPTH, width, height),
    }
    touching = {
        "left": box.left <= 0,
        "top": box.top <= 0,
        "right": box.right >= width,
        "bottom": box.bottom >= height,
    }
    cut = set()
    grey = mask.convert("L")
    for side, strip in strips.items():
        if not touching[side]:
            continue
        part = grey.crop(strip)
        histogram = part.histogram()
        subject = sum(histogram[threshold:])
        if subject >= _CUT_SHARE * (part.width * part.height):
            cut.add(side)
    return frozenset(cut)


def safe_box(frame: tuple[int, int], safe: SafeArea) -> Box:
    width, height = frame
    return Box(safe.left, safe.top, width - safe.right, height - safe.bottom)


@dataclass(frozen=True)
class Framing:
    """Source pixel (x, y) lands at (offset_x + scale·x, offset_y + scale·y) in the frame."""

    frame: tuple[int, int]
    source: tuple[int, int]
    scale: float
    offset_x: float
    offset_y: float
    subject: Box  # in frame pixels
    # Sides of the frame the subject's cut sides are anchored to (they touch the frame there).
    anchored: frozenset[str] = frozenset()
    # Sides where the photo cuts the subject; those not anchored are faded into the backdrop.
    cut: frozenset[str] = frozenset()

    @property
    def floating(self) -> frozenset[str]:
        """Cut sides of the subject that could not reach the frame's edge (both ends of an axis
        cut, and the subject too small across to span the frame without cutting it elsewhere)."""
        return self.cut - self.anchored

    def place(self, box: Box) -> Box:
        s = self.scale
        return Box(
            self.offset_x + s * box.left,
            self.offset_y + s * box.top,
            self.offset_x + s * box.right,
            self.offset_y + s * box.bottom,
        )

    @property
    def image_box(self) -> Box:
        return self.place(Box(0, 0, *self.source))

    @property
    def covers(self) -> bool:
        """The scaled source fills the whole frame (so nothing needs to be filled in)."""
        image = self.image_box
        grown = Box(image.left - 0.5, image.top - 0.5, image.right + 0.5, image.bottom + 0.5)
        return Box(0, 0, *self.frame).inside(grown)

    @property
    def cut_edges(self) -> frozenset[str]:
        """Frame edges beyond which source pixels were cropped away."""
        image, (width, height) = self.image_box, self.frame
        cut = {
            "left": image.left < -0.5,
            "top": image.top < -0.5,
            "right": image.right > width + 0.5,
            "bottom": image.bottom > height + 0.5,
        }
        return frozenset(edge for edge, is_cut in cut.items() if is_cut)

    @property
    def coverage(self) -> float:
        """The subject's height as a fraction of the frame's height."""
        return self.subject.height / self.frame[1]

    def scaled(self, factor: float, frame: tuple[int, int]) -> Framing:
        """The same framing for the frame drawn `factor` times as big (as `frame` pixels)."""
        s = factor
        subject = Box(
            self.subject.left * s, self.subject.top * s, self.subject.right * s,
            self.subject.bottom * s,
        )  # fmt: skip
        return replace(
            self,
            frame=frame,
            scale=self.scale * s,
            offset_x=self.offset_x * s,
            offset_y=self.offset_y * s,
            subject=subject,
        )


def plan_framing(
    source: tuple[int, int],
    subject: Box | None,
    frame: tuple[int, int],
    safe: SafeArea = SafeArea(),
    min_coverage: float = 0.0,
    cut: frozenset[str] | None = None,
    *,
    contain: bool = False,
) -> Framing:
    """Choose scale and offset: subject (plus a margin) inside the safe area, its cut sides on
    the frame's edges, as big as the frame's cover scale allows, at least `min_coverage` of the
    frame's height when that fits.

    `cut`: the sides where the photo cuts the subject (`cut_sides`); by default every side its
    box touches. Priorities, in order: the subject is never cut further and its content never
    leaves the safe area; a cut side sits on the frame's edge; the subject reaches the coverage a
    marketplace asks for; the source covers the frame (a pure crop). Where a crop would cut the
    subject, the frame is left partly uncovered for the backdrop to fill. Without a subject the
    frame is a centred crop: there is nothing to keep whole.

    `contain`: aim for the whole photo inside the frame instead of covering it (for an AI
    expand, which fills the rest with new pixels); the same priorities hold.
    """
    source_w, source_h = source
    frame_w, frame_h = frame
    # The scale the photo is aimed at: covering the frame, or (contain) just inside it.
    fit = (min if contain else max)(frame_w / source_w, frame_h / source_h)
    if subject is None:
        offset_x, offset_y = (frame_w - fit * source_w) / 2, (frame_h - fit * source_h) / 2
        whole = Box(offset_x, offset_y, offset_x + fit * source_w, offset_y + fit * source_h)
        return Framing(frame, source, fit, offset_x, offset_y, whole)
    box = subject
    if cut is None:
        cut = _touching(box, source)
    guard = _with_margin(box, source, cut)
    area = safe_box(frame, safe)
    horizontal = _Axis(guard.left, guard.right, area.left, area.right, frame_w, source_w,
                       "left" in cut, "right" in cut, anchor_both_to_hi=False)  # fmt: skip
    vertical = _Axis(guard.top, guard.bottom, area.top, area.bottom, frame_h, source_h,
                     "top" in cut, "bottom" in cut, anchor_both_to_hi=True)  # fmt: skip
    largest = min(horizontal.largest_scale, vertical.largest_scale)
    wanted = max(fit, min_coverage * frame_h / box.height)
    scale = min(wanted, largest)
    offset_x, anchored_x = horizontal.offset(scale)
    offset_y, anchored_y = vertical.offset(scale)
    placed = Box(
        offset_x + scale * box.left,
        offset_y + scale * box.top,
        offset_x + scale * box.right,
        offset_y + scale * box.bottom,
    )
    names = {("x", "lo"): "left", ("x", "hi"): "right", ("y", "lo"): "top", ("y", "hi"): "bottom"}
    anchored = frozenset(
        [names["x", end] for end in anchored_x] + [names["y", end] for end in anchored_y]
    )
    return Framing(frame, source, scale, offset_x, offset_y, placed, anchored, cut)


def _touching(box: Box, source: tuple[int, int]) -> frozenset[str]:
    touching = {
        "left": box.left <= 0,
        "top": box.top <= 0,
        "right": box.right >= source[0],
        "bottom": box.bottom >= source[1],
    }
    return frozenset(side for side, is_touching in touching.items() if is_touching)


def _with_margin(box: Box, source: tuple[int, int], cut: frozenset[str]) -> Box:
    """The box grown by a margin, but not past the source's edges, and not at all on a cut
    side: a subject the photo itself cuts (a half-body shot) sits flush with the frame there."""
    margin = max(_MIN_MARGIN, _MARGIN_RATIO * max(box.width, box.height))

    def grow(side: str, value: float, delta: float, limit: float) -> float:
        if side in cut:
            return value
        return max(limit, value + delta) if delta < 0 else min(limit, value + delta)

    return Box(
        grow("left", box.left, -margin, 0.0),
        grow("top", box.top, -margin, 0.0),
        grow("right", box.right, margin, float(source[0])),
        grow("bottom", box.bottom, margin, float(source[1])),
    )


@dataclass(frozen=True)
class _Axis:
    """One axis of the plan: the subject's span [lo, hi] in source pixels, the safe span in the
    frame, the frame's and the source's lengths, and which ends of the subject are cut."""

    lo: float
    hi: float
    safe_lo: float
    safe_hi: float
    frame: int
    length: int
    cut_lo: bool
    cut_hi: bool
    # With both ends cut and the subject too small to reach both frame edges, which end to
    # anchor: the bottom (a bust stands on the frame's bottom edge) or, across, neither.
    anchor_both_to_hi: bool

    @property
    def largest_scale(self) -> float:
        """The biggest scale that keeps the content in the safe span and cut ends on the frame."""
        lo = 0.0 if self.cut_lo else self.safe_lo
        hi = float(self.frame) if self.cut_hi else self.safe_hi
        return max(hi - lo, 1.0) / max(self.hi - self.lo, 1e-6)

    def offset(self, scale: float) -> tuple[float, tuple[str, ...]]:
        """The offset at `scale` and which ends it anchors to the frame's edges."""
        spans_frame = scale * (self.hi - self.lo) >= self.frame - 0.5
        if self.cut_lo and self.cut_hi:
            if spans_frame:
                return (self.frame - scale * (self.lo + self.hi)) / 2, ("lo", "hi")
            if self.anchor_both_to_hi:
                return self.frame - scale * self.hi, ("hi",)
            return self._free(scale), ()
        if self.cut_hi:
            return self.frame - scale * self.hi, ("hi",)
        if self.cut_lo:
            return -scale * self.lo, ("lo",)
        return self._free(scale), ()

    def _free(self, scale: float) -> float:
        """Centre the subject in the safe span, then prefer positions where the image covers
        the frame (or, if it cannot, stays whole inside it), never leaving the safe span."""
        subject_min = self.safe_lo - scale * self.lo
        subject_max = self.safe_hi - scale * self.hi
        target = (self.safe_lo + self.safe_hi) / 2 - scale * (self.lo + self.hi) / 2
        fill_a, fill_b = self.frame - scale * self.length, 0.0
        target = min(max(target, min(fill_a, fill_b)), max(fill_a, fill_b))
        return min(max(target, subject_min), subject_max)


# -- rendering ------------------------------------------------------------------------------------


def render_framing(
    framing: Framing, image: Image.Image, mask: Image.Image | None = None
) -> Image.Image:
    """The framed photo. A crop where the photo covers the frame; otherwise the sharp subject
    (`mask`) over a backdrop made from the photo's own background, filled and blurred to the
    whole frame. A photo with transparency keeps it: what it does not cover stays transparent.
    """
    if framing.covers:
        visible, position = _resampled(framing, image)
        if position == (0, 0) and visible.size == framing.frame:
            return visible
    if image.mode == "RGBA" or mask is None:
        visible, position = _resampled(framing, image)
        # Transparent cut-outs are placed, not extended; without a mask nothing is known about
        # the background, so the photo itself (blurred) is the backdrop under it.
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        canvas = (
            Image.new(mode, framing.frame, 0)
            if mode == "RGBA"
            else _photo_backdrop(framing, image, Image.new("L", image.size, 0))
        )
        canvas.paste(visible, position)
        return canvas
    canvas = _photo_backdrop(framing, image, mask)
    _paste_subject(canvas, framing, image, mask)
    return canvas


def render_recomposited(
    framing: Framing, subject: Image.Image, background: Image.Image
) -> Image.Image:
    """The cut-out subject (RGBA, alpha = mask) placed per `framing` over the pose's own
    background rendered for the frame: a plain colour fills it, an image is cover-fitted to it."""
    colour = _plain_colour(background)
    if colour is not None:
        mode = "RGBA" if len(colour) == 4 else "RGB"
        canvas = Image.new(mode, framing.frame, colour)
    else:
        fitted = fit_cover(background, framing.frame)
        canvas = _in_mode(fitted, "RGBA" if fitted.has_transparency_data else "RGB")
    rgba = _in_mode(subject, "RGBA")
    _paste_subject(canvas, framing, rgba, rgba.getchannel("A"))
    return canvas


def _plain_colour(image: Image.Image) -> tuple[int, ...] | None:
    """The one colour of an image that has only one (a solid colour background), else None."""
    if image.mode not in ("RGB", "RGBA"):
        return None
    extrema = image.getextrema()
    if all(low == high for low, high in extrema):  # type: ignore[union-attr]
        return tuple(low for low, _ in extrema)  # type: ignore[union-attr]
    return None


def _photo_backdrop(framing: Framing, image: Image.Image, mask: Image.Image) -> Image.Image:
    """The whole frame from the photo's background: small, filled, blurred, scaled up."""
    frame_w, frame_h = framing.frame
    factor = min(1.0, _BACKDROP_WORK_SIDE / max(frame_w, frame_h))
    work = (max(1, round(frame_w * factor)), max(1, round(frame_h * factor)))
    small = framing.scaled(factor, work)
    # The whole source at the work scale (it may overhang the work frame; that part is cropped).
    sw = max(1, round(image.width * small.scale))
    sh = max(1, round(image.height * small.scale))
    photo = _in_mode(image, "RGB").resize((sw, sh), Image.Resampling.BOX)
    hole = mask.resize((sw, sh), Image.Resampling.BOX)
    if framing.floating:
        # Beyond a floating cut the backdrop continues the subject's own colours (the body goes
        # on, out of focus), so the subject fading into it does not read as a smear.
        hole = hole.copy()
        depth = max(2, round(_FLOATING_KNOWN * max(sw, sh)))
        strips = {
            "left": (0, 0, depth, sh),
            "right": (sw - depth, 0, sw, sh),
            "top": (0, 0, sw, depth),
            "bottom": (0, sh - depth, sw, sh),
        }
        for side in framing.floating:
            hole.paste(0, strips[side])
    position = (round(small.offset_x), round(small.offset_y))
    blur = _BACKDROP_BLUR * max(work)
    drawn = backdrop(photo, hole, position, work, blur)
    return drawn.resize(framing.frame, Image.Resampling.BILINEAR)


def _paste_subject(
    canvas: Image.Image, framing: Framing, image: Image.Image, mask: Image.Image
) -> None:
    """Resample only the subject's part of the photo (and mask) and paste it with the mask."""
    bbox = mask.point(lambda value: 255 if value >= _LAYER_THRESHOLD else 0).getbbox()
    if bbox is None:
        return
    placed = framing.place(Box(*map(float, bbox)))
    frame_w, frame_h = framing.frame
    photo = framing.image_box
    region = (
        max(0, int(placed.left) - 1, round(photo.left)),
        max(0, int(placed.top) - 1, round(photo.top)),
        min(frame_w, int(placed.right) + 2, round(photo.right)),
        min(frame_h, int(placed.bottom) + 2, round(photo.bottom)),
    )
    if region[2] <= region[0] or region[3] <= region[1]:
        return
    rgb = resample_region(framing, image.convert("RGB") if image.mode == "RGBA" else image, region)
    # The mask is soft already: bilinear is enough for it, and a third of Lanczos' cost.
    alpha = resample_region(framing, mask.convert("L"), region, Image.Resampling.BILINEAR)
    if framing.floating:
        alpha = _fade_floating(alpha, framing, region)
    if rgb.mode != canvas.mode:
        rgb = rgb.convert(canvas.mode)
    canvas.paste(rgb, region[:2], alpha)


def _fade_floating(
    alpha: Image.Image, framing: Framing, region: tuple[int, int, int, int]
) -> Image.Image:
    """Fade the subject out towards its floating cut sides, so a cut that cannot sit on the
    frame's edge melts into the backdrop (made from the same photo) instead of ending on a line."""
    photo = framing.image_box
    band = max(4.0, _FADE_SHARE * min(framing.frame))
    x0, y0, x1, y1 = region
    pixels = np.array(alpha)
    floating = framing.floating
    # Only the bands next to floating sides change; the rest of the layer is left as it is.
    for side in floating:
        horizontal = side in ("left", "right")
        lo, hi = (x0, x1) if horizontal else (y0, y1)
        edge = getattr(photo, side)
        start, stop = (edge, edge + band) if side in ("left", "top") else (edge - band, edge)
        first, last = max(lo, int(start)), min(hi, int(np.ceil(stop)))
        if last <= first:
            continue
        centres = np.arange(first, last, dtype=np.float32) + 0.5
        distance = centres - edge if side in ("left", "top") else edge - centres
        ramp = np.clip(distance / band, 0.0, 1.0)
        if horizontal:
            part = pixels[:, first - lo : last - lo]
            part[...] = (part * ramp[None, :] + 0.5).astype(np.uint8)
        else:
            part = pixels[first - lo : last - lo, :]
            part[...] = (part * ramp[:, None] + 0.5).astype(np.uint8)
    return Image.fromarray(pixels, "L")


def _in_mode(image: Image.Image, mode: str) -> Image.Image:
    """`convert` copies even when the mode is already right; a 2480x3508 copy costs ~40 ms."""
    return image if image.mode == mode else image.convert(mode)


def _resampled(framing: Framing, image: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
    """The part of the source that lands in the frame, resampled once with Lanczos."""
    frame_w, frame_h = framing.frame
    placed = framing.image_box
    x0, y0 = max(0, round(placed.left)), max(0, round(placed.top))
    x1, y1 = min(frame_w, round(placed.right)), min(frame_h, round(placed.bottom))
    return resample_region(framing, image, (x0, y0, max(x0 + 1, x1), max(y0 + 1, y1))), (x0, y0)


def resample_region(
    framing: Framing,
    image: Image.Image,
    region: tuple[int, int, int, int],
    method: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """The frame pixels `region` (x0, y0, x1, y1) of the placed source, Lanczos-resampled."""
    x0, y0, x1, y1 = region
    s = framing.scale
    source_box = (
        max(0.0, (x0 - framing.offset_x) / s),
        max(0.0, (y0 - framing.offset_y) / s),
        min(float(image.width), (x1 - framing.offset_x) / s),
        min(float(image.height), (y1 - framing.offset_y) / s),
    )
    # reducing_gap: a fast box pre-reduction for big downscales, indistinguishable from pure
    # Lanczos at 3x (Pillow's docs); it makes a 24 MP source → 1080 px render several times faster.
    gap = 3.0 if s < 1 / 3 else None
    if s > 1 and method == Image.Resampling.LANCZOS:
        # Enlarging, Lanczos' third lobe adds nothing visible over bicubic but costs ~1.5x.
        method = Image.Resampling.BICUBIC
    return image.resize(
        (max(1, x1 - x0), max(1, y1 - y0)),
        method,
        box=source_box,
        reducing_gap=gap,
    )
