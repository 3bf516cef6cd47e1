"""Format thumbnails for the web app's format selector, rendered by the export code itself.

`render_preview` shrinks the pose and the format by the same factor (frame, safe area) and runs
`render_image` on them: the same plan (subject box, cut sides measured on the full-size mask,
safe area, coverage) and the same renderer (crop, or sharp subject over its own filled and
blurred background, or the cut-out over a changed background), so what the seller previews is
what the export gives them, only smaller.
"""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from posegen.domain.exports import ExportFormat, SafeArea, resolve_format
from posegen.imaging.exporting import DecodedPose, render_image
from posegen.imaging.reframe import Box, cut_sides, subject_box
from posegen.imaging.segmentation import cutout

# The source is shrunk to this many times the preview's own pixel density (enough for Lanczos).
_SOURCE_OVERSAMPLE = 2.0


def render_preview(
    image: Image.Image,
    mask: Image.Image | None,
    fmt: ExportFormat | str,
    max_side: int = 256,
    *,
    original: Image.Image | None = None,
    background: Image.Image | None = None,
) -> Image.Image:
    """A thumbnail of `fmt` (a catalog name, `custom:WxH`, or a spec) for the pose `image`,
    at most `max_side` pixels on its longer side, in the format's aspect.

    `mask`: the pose's subject mask (any size; None segments `image` once, as an export would).
    For a changed pose pass `background` (its stored background) and `original` (the photo
    the mask was made from; `image` when omitted): the preview re-composites the cut-out over
    the background rendered for the frame, as its export does.
    """
    spec = resolve_format(fmt) if isinstance(fmt, str) else fmt
    if mask is None:
        from posegen.imaging.segmentation import segment

        mask = segment(original or image)
    mask = mask.convert("L")
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.LANCZOS)
    box = subject_box(mask)
    cut = cut_sides(mask, box)
    frame_w, frame_h = spec.frame_size(image.size)
    factor = min(1.0, max_side / max(frame_w, frame_h))
    small_frame = (max(1, round(frame_w * factor)), max(1, round(frame_h * factor)))
    small_fmt = replace(
        spec,
        width=small_frame[0],
        height=small_frame[1],
        safe_area=_scaled_area(spec.safe_area, factor),
    )
    # Shrink the source too (a 24 MP photo for a 256 px thumbnail): by as much as the preview
    # allows, keeping a margin of resolution for the render's own resample.
    cover = max(frame_w / image.width, frame_h / image.height)
    shrink = min(1.0, _SOURCE_OVERSAMPLE * factor * max(cover, 1.0))
    size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
    sx, sy = size[0] / image.width, size[1] / image.height
    small_image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    small_mask = mask.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    small_box = Box(box.left * sx, box.top * sy, box.right * sx, box.bottom * sy) if box else None
    subject = None
    if background is not None:
        source = original if original is not None else image
        if source.size != image.size:
            source = source.resize(image.size, Image.Resampling.LANCZOS)
        subject = cutout(
            source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), small_mask
        )
    pose = DecodedPose(small_image, small_mask, small_box, subject, background, cut=cut)
    if spec.keeps_source:
        small_image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return small_image
    rendered, _ = render_image(pose, small_fmt)
    return rendered


def _scaled_area(area: SafeArea, factor: float) -> SafeArea:
    return SafeArea(
        top=round(area.top * factor),
        right=round(area.right * factor),
        bottom=round(area.bottom * factor),
        left=round(area.left * factor),
    )
