"""Encoding images: `encode_png` for every PNG posegen stores, and export files (PNG or JPEG per
format, byte limits met by quality search, sRGB, dpi).

Outputs carry exactly two pieces of metadata: an sRGB ICC profile (so every viewer and print shop
reads the colours the same way) and, where a format has one, its dpi. Nothing else from the
source (EXIF, text, GPS) can reach them: decoded images arrive without metadata, and only these
two are passed to the encoder.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageCms

from posegen.domain.exports import ExportFormat, FileType
from posegen.errors import PermanentError
from posegen.imaging.decoding import has_alpha

SRGB_ICC: Final = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# Below this a photo shows blocking; a limit we cannot meet above it is an error, not an ugly file.
MIN_JPEG_QUALITY: Final = 40
# Flattening colour for transparent pixels in a JPEG: marketplaces ask for white backgrounds.
_FLATTEN_ON: Final = (255, 255, 255)
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# A stored PNG made only of these chunks decodes to exactly its pixels: no colour profile, gamma,
# transparency key, palette or EXIF/text chunk (which may carry an orientation) changes them.
_PIXELS_ONLY_CHUNKS: Final = frozenset({b"IHDR", b"IDAT", b"IEND"})
# What `encode_png` writes per mode: PNG colour type, bytes per pixel.
_PNG_LAYOUTS: Final = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}
# The colour types a stored file may be re-tagged from (8-bit RGB or RGBA only).
_PNG_COLOUR_TYPES: Final = {mode: _PNG_LAYOUTS[mode][0] for mode in ("RGB", "RGBA")}
_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# How Pillow writes the profile (`iCCP`: name, compression method 0, zlib data), so readers
# get back exactly SRGB_ICC whichever of the two wrote the file.
_ICCP: Final = b"ICC Profile\0\0" + zlib.compress(SRGB_ICC)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata (no EXIF, ICC, text or DPI), quick to write.

    RGB or RGBA, except that a greyscale ("L") image such as a mask stays one channel: a third
    of the size, and `convert("L")` after reading it back as RGB gives the same values.

    Written here rather than by Pillow, which spends most of its PNG time choosing a filter per
    row (50 ms of a 1024x1536 RGB image's 67 ms even with compression off): every row takes
    PNG's Average filter, computed for the whole image at once with numpy, then zlib's
    run-length strategy (after the filter a photo leaves few long matches for deflate to find).
    Half Pillow's time at level 6 + RLE, files 1-4 % larger (bench/RESULTS.md, issue 16,
    session 3); every PNG decoder reads them (filter type 3 is in PNG's first version).
    """
    if image.mode == "L" and not image.has_transparency_data:
        mode = "L"
    else:
        mode = "RGBA" if has_alpha(image) else "RGB"
    # convert() always returns a new image, so the caller's image and its metadata stay as is.
    pixels = np.asarray(image.convert(mode))
    height, width = pixels.shape[:2]
    colour_type, channels = _PNG_LAYOUTS[mode]
    rows = _average_filtered(pixels.reshape(height, width * channels), channels)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(rows) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join([_PNG_SIGNATURE, _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", data), _IEND])


def _average_filtered(rows: np.ndarray, channels: int) -> memoryview:
    """PNG's filter type 3 on every row: each byte minus the floor of the mean of the byte to
    its left and the byte above (0 beyond the edges), modulo 256, after the filter-type byte."""
    left = np.zeros_like(rows)
    left[:, channels:] = rows[:, :-channels]
    up = np.zeros_like(rows)
    up[1:] = rows[:-1]
    mean = (left & up) + ((left ^ up) >> 1)  # floor((left + up) / 2) without overflowing a byte
    filtered = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 3
    np.subtract(rows, mean, out=filtered[:, 1:])
    return memoryview(filtered).cast("B")


def png_options() -> dict[str, int]:
    """Pillow PNG save options for the export files Pillow writes (with a profile and dpi)."""
    return {"compress_level": 6, "compress_type": zlib.Z_RLE}


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    file_type: FileType
    quality: int | None = None

    @property
    def extension(self) -> str:
        return "png" if self.file_type == FileType.PNG else "jpg"

    @property
    def content_type(self) -> str:
        return "image/png" if self.file_type == FileType.PNG else "image/jpeg"


def encode_export(
    image: Image.Image, fmt: ExportFormat, *, stored_png: bytes | None = None
) -> EncodedImage:
    """The file for `fmt`: PNG when the format keeps pixels exactly or the image needs its
    transparency, JPEG otherwise — at the format's quality, or the best quality under its limit.

    `stored_png`: the PNG file `image` itself was decoded from (not a file of the image it was
    rendered from). When that file holds these pixels and nothing else, a PNG output reuses its
    compressed data instead of compressing the pixels again (the costliest step of `original`),
    adding only the profile and dpi."""
    if fmt.file_type == FileType.PNG or (fmt.file_type == FileType.AUTO and _see_through(image)):
        reused = _png_from_stored(stored_png, image, fmt.dpi) if stored_png else None
        encoded = EncodedImage(reused or _png(image, fmt.dpi), FileType.PNG)
        _check_limit(encoded, fmt)
        return encoded
    rgb = _flatten(image)
    if fmt.max_bytes is None:
        return EncodedImage(_jpeg(rgb, fmt.jpeg_quality, fmt.dpi), FileType.JPEG, fmt.jpeg_quality)
    return _jpeg_within(rgb, fmt)


def _jpeg_within(image: Image.Image, fmt: ExportFormat) -> EncodedImage:
    """Binary search for the highest quality whose file fits the byte limit.

    The format's own quality is tried first: most photos fit at once, costing one encode.
    """
    assert fmt.max_bytes is not None
    best = _jpeg(image, fmt.jpeg_quality, fmt.dpi)
    quality = fmt.jpeg_quality
    if len(best) > fmt.max_bytes:
        low, high = MIN_JPEG_QUALITY, fmt.jpeg_quality - 1
        found: tuple[int, bytes] | None = None
        while low <= high:
            middle = (low + high) // 2
            data = _jpeg(image, middle, fmt.dpi)
            if len(data) <= fmt.max_bytes:
                found, low = (middle, data), middle + 1
            else:
                high = middle - 1
        if found is None:
            raise PermanentError(
                f"{fmt.display_name}: even at JPEG quality {MIN_JPEG_QUALITY} the image is larger "
                f"than {fmt.max_bytes} bytes."
            )
        quality, best = found
    encoded = EncodedImage(best, FileType.JPEG, quality)
    _check_limit(encoded, fmt)
    return encoded


def _check_limit(encoded: EncodedImage, fmt: ExportFormat) -> None:
    """The limit is a platform's upload rule: verify the bytes we are about to store."""
    if fmt.max_bytes is not None and len(encoded.data) > fmt.max_bytes:
        raise PermanentError(
            f"{fmt.display_name}: the file is {len(encoded.data)} bytes, over the platform's "
            f"limit of {fmt.max_bytes}."
        )


def _jpeg(image: Image.Image, quality: int, dpi: int | None) -> bytes:
    """Baseline JPEG with 4:4:4 chroma: product colours stay crisp at edges (4:2:0 bleeds)."""
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality, "subsampling": 0, "icc_profile": SRGB_ICC}
    if dpi is not None:
        options["dpi"] = (dpi, dpi)
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _png(image: Image.Image, dpi: int | None) -> bytes:
    """Unoptimized PNG: optimize costs several times the time for a few percent of size; zlib's
    run-length strategy (see `encode_png`) is about as small as level 6 on photos, 3-5x faster."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    buffer = io.BytesIO()
    options: dict[str, object] = {**png_options(), "icc_profile": SRGB_ICC}
    if dpi is not None:
        options["dpi"] = (dpi, dpi)
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _png_from_stored(stored: bytes, image: Image.Image, dpi: int | None) -> bytes | None:
    """`stored` with its metadata replaced by ours, if its pixels are exactly `image`'s (8-bit
    RGB or RGBA of the same size, not interlaced, pixel chunks only); None otherwise."""
    chunks = _png_chunks(stored)
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        return None
    if any(kind not in _PIXELS_ONLY_CHUNKS for kind, _ in chunks) or len(chunks[0][1]) != 13:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    wanted_colour = _PNG_COLOUR_TYPES.get(image.mode)
    if (width, height) != image.size or depth != 8 or colour != wanted_colour or interlace:
        return None
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", chunks[0][1]), _png_chunk(b"iCCP", _ICCP)]
    if dpi is not None:
        per_metre = int(dpi / 0.0254 + 0.5)
        parts.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    parts.extend(_png_chunk(kind, data) for kind, data in chunks[1:])
    return b"".join(parts)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, data) of every chunk up to IEND; None unless the file is well formed to there."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    chunks, position = [], len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > len(data):
            return None
        body = data[position + 8 : end]
        if struct.unpack_from(">I", data, end)[0] != zlib.crc32(body, zlib.crc32(kind)):
            return None
        chunks.append((kind, body))
        position = end + 4
        if kind == b"IEND":
            return chunks
    return None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I4s", len(data), kind) + data + struct.pack(">I", crc)


def _see_through(image: Image.Image) -> bool:
    if not image.has_transparency_data:
        return False
    lowest, _ = image.convert("RGBA").getchannel("A").getextrema()
    return lowest < 255


def _flatten(image: Image.Image) -> Image.Image:
    if not image.has_transparency_data:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, _FLATTEN_ON)
    canvas.paste(rgba, (0, 0), rgba.getchannel("A"))
    return canvas
