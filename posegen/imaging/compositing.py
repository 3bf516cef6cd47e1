"""Putting a cut-out subject in front of a new background: colours, canvases, cover fit, blend."""

from __future__ import annotations

import re
from typing import Final

from PIL import Image, ImageOps

from posegen.errors import ValidationFailed

_HEX_COLOR: Final = re.compile(r"#[0-9A-Fa-f]{6}")


def parse_hex_color(value: str) -> tuple[int, int, int]:
    """`#RRGGBB` (either case) to an RGB triple; the one colour syntax the API accepts."""
    if not isinstance(value, str) or not _HEX_COLOR.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValidationFailed(
            f"A colour must be written #RRGGBB (for example #1A2B3C), not {shown}.",
            field="backgroundColor",
        )
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


def solid_canvas(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    """An RGB image of one colour: the `solid_color` background."""
    _check_size(size)
    return Image.new("RGB", size, color)


def fit_cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale `image` to cover `size` and crop the overflow evenly, like CSS `object-fit: cover`.

    A background must fill the frame without distortion; losing its edges is the lesser evil.
    """
    _check_size(size)
    if image.size == size:
        return image.copy()
    # Lanczos is not defined on palette or bilevel images; Pillow would silently use nearest.
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def composite(subject: Image.Image, background: Image.Image) -> Image.Image:
    """`subject` (RGBA, alpha = mask) over `background` fitted to the subject's size.

    The result is RGB unless the background itself lets something show through, so an opaque
    result never carries a useless alpha channel into JPEG exports.
    """
    subject = subject.convert("RGBA")
    fitted = fit_cover(background, subject.size)
    if _is_see_through(fitted):
        return Image.alpha_composite(fitted.convert("RGBA"), subject)
    result = fitted.convert("RGB")
    result.paste(subject.convert("RGB"), (0, 0), subject.getchannel("A"))
    return result


def _is_see_through(image: Image.Image) -> bool:
    if not image.has_transparency_data:
        return False
    lowest_alpha, _ = image.convert("RGBA").getchannel("A").getextrema()
    return lowest_alpha < 255


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"an image size must be positive, got {width}x{height}")
