"""Decoding untrusted bytes: hostile or broken files are refused with a message users understand."""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from posegen.errors import ValidationFailed
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_png

NOT_AN_IMAGE = "The file is not an image we can read (PNG, JPEG or WebP)."


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and header for a huge 1-bit image, with just one row of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    one_row = zlib.compress(b"\x00" * (1 + (width + 7) // 8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", one_row)
        + chunk(b"IEND", b"")
    )


def _noisy_jpeg(size: tuple[int, int] = (256, 256)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels), "JPEG", quality=90)


def _two_frames(fmt: str) -> bytes:
    first, second = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    return _encode(first, fmt, save_all=True, append_images=[second])


def _refusal(data: bytes, **kwargs: int) -> str:
    with pytest.raises(ValidationFailed) as caught:
        open_image(data, **kwargs)
    return caught.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", "The file is empty.", id="empty"),
        pytest.param(random.Random(0).randbytes(4096), NOT_AN_IMAGE, id="random-bytes"),
        pytest.param(b"name,price\nshirt,10\n" * 20, NOT_AN_IMAGE, id="text-file"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, NOT_AN_IMAGE, id="png-signature-only"),
    ],
)
def test_non_images_are_refused(data: bytes, expected: str) -> None:
    assert _refusal(data) == expected


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_claiming(20_000, 20_000)
    assert len(bomb) < 2_000

    assert "too large" in _refusal(bomb)


def test_image_over_the_limit_is_refused_with_its_size() -> None:
    data = _encode(Image.new("RGB", (100, 50)), "PNG")

    message = _refusal(data, max_pixels=4_999)

    assert "too large (100x50)" in message
    assert open_image(data, max_pixels=5_000).size == (100, 50)


def test_pillow_bomb_warning_raised_as_error_is_refused_too() -> None:
    # Between the limit and twice the limit Pillow only warns; where warnings are errors the
    # warning itself must still become a clean refusal.
    data = _png_claiming(7_000, 7_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert "too large" in _refusal(data)


def test_truncated_jpeg_is_refused() -> None:
    data = _noisy_jpeg()

    message = _refusal(data[: len(data) // 2])

    assert "damaged or incomplete" in message


def test_truncated_png_is_refused() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), "PNG")

    assert "damaged or incomplete" in _refusal(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animated_images_are_refused(fmt: str) -> None:
    assert _refusal(_two_frames(fmt)).startswith("Animated images are not supported")


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("TIFF", "TIFF"), ("BMP", "BMP")])
def test_other_formats_are_refused_by_name(fmt: str, name: str) -> None:
    data = _two_frames(fmt) if fmt == "GIF" else _encode(Image.new("RGB", (8, 8)), fmt)

    assert _refusal(data) == f"{name} images are not supported: upload a PNG, JPEG or WebP image."


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt: str) -> None:
    image = open_image(_encode(Image.new("RGB", (30, 20), (0, 128, 255)), fmt))

    assert (image.mode, image.size) == ("RGB", (30, 20))
    assert all(
        abs(a - b) <= 4 for a, b in zip(image.getpixel((15, 10)), (0, 128, 255), strict=True)
    )


def test_jpeg_with_extra_pictures_gives_the_first_one() -> None:
    # Phones write JPEGs with a multi-picture (MPO) extension; they are ordinary photos to users.
    first, preview = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), "blue")
    data = _encode(first, "MPO", save_all=True, append_images=[preview])

    image = open_image(data)

    red, green, blue = image.getpixel((8, 8))
    assert red > 240 and green < 16 and blue < 16


def test_exif_orientation_is_applied() -> None:
    # Stored landscape, left half red and right half blue, with orientation 6 ("rotate 90° CW to
    # view"): upright it is portrait with red on top.
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    image = open_image(data)

    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50
    assert image.getexif().get(0x0112) is None


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")

    image = open_image(data)

    assert image.mode == "RGB"
    red, green, blue = image.getpixel((4, 4))
    assert red > 240 and green < 16 and blue < 16


def test_palette_png_with_transparency_becomes_rgba() -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((0, 0), 0)
    data = _encode(palette, "PNG", transparency=0)

    image = open_image(data)

    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((1, 1)) == (255, 0, 0, 255)


def test_opaque_palette_png_becomes_rgb() -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0])

    image = open_image(_encode(palette, "PNG"))

    assert (image.mode, image.getpixel((2, 2))) == ("RGB", (0, 255, 0))


def test_grey_with_alpha_becomes_rgba() -> None:
    image = open_image(_encode(Image.new("LA", (4, 4), (90, 128)), "PNG"))

    assert (image.mode, image.getpixel((0, 0))) == ("RGBA", (90, 90, 90, 128))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    data = _encode(Image.fromarray(np.full((4, 4), 40_000, dtype=np.uint16)), "PNG")

    image = open_image(data)

    assert (image.mode, image.getpixel((0, 0))) == ("RGB", (156, 156, 156))


def test_colour_profile_is_applied_and_dropped() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _encode(Image.new("RGB", (4, 4), (10, 200, 30)), "PNG", icc_profile=srgb)

    image = open_image(data)

    assert image.getpixel((0, 0)) == (10, 200, 30)
    assert "icc_profile" not in image.info


def _png_with_metadata(mode: str) -> bytes:
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "someone@example.com")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    color = (1, 2, 3, 4) if mode == "RGBA" else (1, 2, 3)
    return _encode(
        Image.new(mode, (6, 6), color),
        "PNG",
        pnginfo=text,
        exif=exif.tobytes(),
        icc_profile=srgb,
        dpi=(300, 300),
    )


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_encode_png_keeps_pixels_and_drops_metadata(mode: str) -> None:
    source = Image.open(io.BytesIO(_png_with_metadata(mode)))
    assert {"Author", "exif", "icc_profile", "dpi"} <= set(source.info)

    reopened = Image.open(io.BytesIO(encode_png(source)))

    assert reopened.format == "PNG"
    assert reopened.mode == mode
    assert reopened.getpixel((3, 3)) == source.getpixel((3, 3))
    assert reopened.info == {}
    assert len(reopened.getexif()) == 0


def test_encode_png_keeps_a_mask_single_channel() -> None:
    mask = Image.linear_gradient("L")

    data = encode_png(mask)

    assert Image.open(io.BytesIO(data)).mode == "L"
    assert open_image(data).convert("L").tobytes() == mask.tobytes()


def test_open_image_drops_metadata() -> None:
    image = open_image(_png_with_metadata("RGBA"))

    assert image.info == {}
    assert len(image.getexif()) == 0
    assert image.getpixel((0, 0)) == (1, 2, 3, 4)
