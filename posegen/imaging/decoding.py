"""Turning untrusted image bytes into a clean RGB/RGBA image (PNG bytes: `encoding.encode_png`).

Every image that enters posegen from outside (uploads, remote URLs, FLUX results) goes through
`open_image`, so the checks against hostile or broken files live in one place, and the rest of
the code can assume an upright, 8-bit, sRGB, metadata-free RGB or RGBA image.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from posegen.config import get_settings
from posegen.errors import ValidationFailed

_ACCEPTED_FORMATS: Final = ("PNG", "JPEG", "WEBP")
# A JPEG carrying a multi-picture (MPO) extension, as many phones and cameras write: Pillow opens
# it as MPO. The first picture is the photo itself; the others are previews or depth maps.
_JPEG_WITH_EXTRA_PICTURES: Final = "MPO"
_NOT_AN_IMAGE: Final = "The file is not an image we can read (PNG, JPEG or WebP)."
_SRGB: Final = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def open_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Decode image bytes, refusing what a user could not mean or what could hurt the worker.

    `max_pixels` defaults to the `max_image_pixels` setting; it is checked against the header's
    dimensions before any pixel is decoded, so a small file claiming huge dimensions costs nothing.
    """
    if not data:
        raise ValidationFailed("The file is empty.")
    limit = max_pixels if max_pixels is not None else get_settings().max_image_pixels
    image = _open_header(data, limit)
    try:
        _check_dimensions(image, limit)
        _check_single_frame(image)
        _load_pixels(image)
        upright = _upright(image)
    finally:
        image.close()
    clean = _to_srgb(upright)
    clean.info = {}
    return clean


def _open_header(data: bytes, limit: int) -> ImageFile.ImageFile:
    """Parse only the header; Pillow's own bomb check runs here and is made to agree with ours."""
    # Pillow's global limit is a backstop for any Image.open in this process (it warns above the
    # limit and raises above twice the limit); the exact per-call check is `_check_dimensions`.
    Image.MAX_IMAGE_PIXELS = get_settings().max_image_pixels
    try:
        image = Image.open(io.BytesIO(data), formats=_ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(limit) from exc
    except UnidentifiedImageError as exc:
        raise ValidationFailed(_unaccepted_format_message(data)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValidationFailed(_NOT_AN_IMAGE) from exc
    if image.format not in (*_ACCEPTED_FORMATS, _JPEG_WITH_EXTRA_PICTURES):
        image.close()
        raise ValidationFailed(_NOT_AN_IMAGE)
    return image


def _unaccepted_format_message(data: bytes) -> str:
    """Name the format when the file is a real image of a kind we refuse (GIF, TIFF, ...)."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            kind = other.format
    except Exception:
        return _NOT_AN_IMAGE
    return f"{kind} images are not supported: upload a PNG, JPEG or WebP image."


def _check_dimensions(image: Image.Image, limit: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ValidationFailed(_NOT_AN_IMAGE)
    if width * height > limit:
        raise _too_large(limit, width, height)


def _too_large(limit: int, width: int | None = None, height: int | None = None) -> ValidationFailed:
    size = f" ({width}x{height})" if width and height else ""
    megapixels = limit / 1_000_000
    return ValidationFailed(
        f"The image is too large{size}: at most {megapixels:g} megapixels are accepted.",
        maxPixels=limit,
    )


def _check_single_frame(image: Image.Image) -> None:
    if image.format == _JPEG_WITH_EXTRA_PICTURES:
        image.seek(0)
        return
    if getattr(image, "n_frames", 1) > 1:
        raise ValidationFailed(
            "Animated images are not supported: upload a still PNG, JPEG or WebP image."
        )


def _load_pixels(image: Image.Image) -> None:
    """Decode every pixel now, so a truncated file fails here rather than halfway through a flow."""
    # Relies on PIL.ImageFile.LOAD_TRUNCATED_IMAGES keeping its default (False): with it set,
    # Pillow would pad a cut-off file with grey instead of failing.
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(get_settings().max_image_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValidationFailed(
            "The image is damaged or incomplete (the file may have been cut off): "
            "please upload it again."
        ) from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation a camera recorded; returns a new image either way."""
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        # Malformed EXIF should not cost the user their upload; the pixels are fine.
        upright = None
    return upright if upright is not None else image.copy()


def _to_srgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when the image has transparency, with colours converted to sRGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = _sixteen_bit_grey_to_l(image)
    mode = "RGBA" if has_alpha(image) else "RGB"
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        converted = _convert_with_profile(image, icc, mode)
        if converted is not None:
            return converted
    return image.convert(mode)


def _sixteen_bit_grey_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit grey (as PNG stores it) to 8 bits; a plain convert would clip, not scale."""
    values = np.asarray(image).astype(np.uint32)
    scaled = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _convert_with_profile(image: Image.Image, icc: bytes, mode: str) -> Image.Image | None:
    """Phones shoot in Display P3 and print shops send CMYK: honour the embedded profile."""
    if image.mode == "CMYK":
        mode = "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, source, _SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode=mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        # A broken or unsupported profile: fall back to treating the pixels as sRGB.
        return None
    return converted


def has_alpha(image: Image.Image) -> bool:
    """Whether the image has an alpha channel or a transparency key (used or not)."""
    return image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or image.has_transparency_data
