"""Rendering every format: exact size, file type, byte limit and dpi; the subject whole, inside
the safe area, never on a cut edge, and big enough on marketplaces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from posegen.domain.exports import FORMATS, Category, ExportFormat, FileType, resolve_format
from posegen.imaging.encoding import encode_export
from posegen.imaging.exporting import DecodedPose, render_image
from posegen.imaging.reframe import Box, Framing, plan_framing, safe_box, subject_box
from tests.exports.conftest import BACKDROP_RGB, red_box, synthetic_pose

FRAMED = [fmt for fmt in FORMATS.values() if not fmt.keeps_source]
# Centred; near the top right (a crop towards it would cut it); wide and short.
SUBJECTS = {
    "centred": ((600, 800), (240, 120, 360, 700)),
    "top-right": ((900, 700), (760, 4, 880, 400)),
    "wide": ((1000, 500), (100, 150, 900, 420)),
}
_FILE_TYPES = {FileType.JPEG: "JPEG", FileType.PNG: "PNG"}


def encode_and_reopen(image: Image.Image, fmt: ExportFormat) -> tuple[Image.Image, bytes]:
    encoded = encode_export(image, fmt)
    reopened = Image.open(io.BytesIO(encoded.data))
    reopened.load()
    return reopened, encoded.data


def assert_file_matches_format(file: Image.Image, data: bytes, fmt: ExportFormat) -> None:
    assert file.size == (fmt.width, fmt.height)
    expected = FileType.JPEG if fmt.file_type == FileType.AUTO else fmt.file_type
    assert file.format == _FILE_TYPES[expected]
    if fmt.max_bytes is not None:
        assert len(data) <= fmt.max_bytes
    if fmt.dpi is not None:
        assert tuple(round(v) for v in file.info["dpi"]) == (fmt.dpi, fmt.dpi)
    else:
        assert "dpi" not in file.info or fmt.file_type != FileType.PNG
    # Only the sRGB profile (and dpi) survive: no EXIF, no text chunks.
    assert "exif" not in file.info and "icc_profile" in file.info


def assert_subject_placed(found: Box, framing: Framing, fmt: ExportFormat) -> None:
    """Content inside the safe area; a side the photo cuts on the frame's edge (through the
    safe area), or faded out inside the frame when it cannot reach it; never on a frame edge
    where the source was cropped (that would cut the subject further)."""
    width, height = fmt.width, fmt.height
    assert width is not None and height is not None
    area = safe_box((width, height), fmt.safe_area)
    frame = {"left": 0, "top": 0, "right": width, "bottom": height}
    for side in ("left", "top", "right", "bottom"):
        value = getattr(found, side)
        if side in framing.anchored:
            assert abs(value - frame[side]) <= 2, (side, found, framing)
        elif side in framing.floating:
            assert 0 <= value <= max(width, height), (side, found)
        else:
            limit = getattr(area, side)
            inward = value >= limit - 1 if side in ("left", "top") else value <= limit + 1
            assert inward, (side, found, area)
    touching = {
        "left": found.left <= 0,
        "top": found.top <= 0,
        "right": found.right >= width,
        "bottom": found.bottom >= height,
    }
    assert not any(touching[edge] for edge in framing.cut_edges), (found, framing.cut_edges)
    if fmt.category == Category.ECOMMERCE:
        # 60 % of the height, unless the subject is so wide that would cut it: then it spans
        # the frame's width (less its margin) instead. Never cut comes first.
        assert found.height / height >= 0.6 - 0.01 or found.width / width >= 0.9, found


# Every framed format with every subject, except that one A4 render (2480x3508) is enough.
CASES = [
    (fmt, subject)
    for fmt in FRAMED
    for subject in SUBJECTS
    if fmt.name != "a4_print" or subject == "centred"
]


@pytest.mark.parametrize(("fmt", "subject"), CASES, ids=lambda v: getattr(v, "name", v))
def test_synthetic_subject_in_every_format(fmt: ExportFormat, subject: str) -> None:
    size, box = SUBJECTS[subject]
    pose = synthetic_pose(size, box)
    image, framing = render_image(pose, fmt)
    assert framing is not None
    file, data = encode_and_reopen(image, fmt)
    assert_file_matches_format(file, data, fmt)
    found = red_box(file)
    assert found is not None
    # The rendered red pixels are where the plan put the subject (±2 px of resampling and JPEG).
    planned = framing.subject
    assert abs(found.left - planned.left) <= 2 and abs(found.right - planned.right) <= 2
    assert abs(found.top - planned.top) <= 2 and abs(found.bottom - planned.bottom) <= 2
    assert_subject_placed(found, framing, fmt)


def test_marketplace_coverage_reaches_sixty_percent_for_a_small_subject() -> None:
    """A subject only 15 % of the photo's height is scaled up to cover ≥ 60 % of the frame."""
    pose = synthetic_pose((1000, 1000), (450, 400, 550, 550))
    for name in ("shopee_product", "tokopedia_product"):
        fmt = FORMATS[name]
        image, framing = render_image(pose, fmt)
        assert framing is not None and framing.coverage >= 0.6
        found = red_box(image)
        assert found is not None and found.height / image.height >= 0.6 - 0.01


def test_plain_backdrop_is_extended_with_its_own_colour() -> None:
    """The top-right subject forces the story frame past the photo's edge: the filled part is
    the backdrop colour, not black and not a stretched copy of the subject."""
    size, box = SUBJECTS["top-right"]
    image, framing = render_image(synthetic_pose(size, box), FORMATS["instagram_story"])
    assert framing is not None and not framing.covers
    placed = framing.image_box
    pixels = np.asarray(image.convert("RGB")).astype(int)
    outside = np.ones(pixels.shape[:2], dtype=bool)
    outside[
        max(0, int(placed.top)) : int(np.ceil(placed.bottom)),
        max(0, int(placed.left)) : int(np.ceil(placed.right)),
    ] = False
    assert outside.any()
    assert np.abs(pixels[outside] - BACKDROP_RGB).max() == 0


def test_changed_background_is_recomposited_around_the_subject() -> None:
    """With a stored background, the frame is filled with it, and the subject keeps its pixels."""
    base = synthetic_pose((600, 800), (240, 120, 360, 700))
    backdrop = Image.new("RGB", (600, 800), (0, 200, 0))
    composite = backdrop.copy()
    composite.paste(base.image, (0, 0), base.mask)
    pose = DecodedPose(
        composite, base.mask, base.subject, cutout=base.image.convert("RGBA"), background=backdrop
    )
    pose.cutout.putalpha(base.mask)  # type: ignore[union-attr]
    image, framing = render_image(pose, FORMATS["instagram_story"])
    assert framing is not None
    rgb = image.convert("RGB")
    assert rgb.getpixel((5, 5)) == (0, 200, 0)  # was outside the photo: background, not blur
    assert rgb.getpixel((5, 1915)) == (0, 200, 0)
    found = red_box(rgb)
    assert found is not None
    assert_subject_placed(found, framing, FORMATS["instagram_story"])


def test_original_keeps_the_source_pixels() -> None:
    pose = synthetic_pose((333, 211), (100, 20, 200, 190))
    image, framing = render_image(pose, FORMATS["original"])
    assert framing is None
    file, _ = encode_and_reopen(image, FORMATS["original"])
    assert file.format == "PNG" and file.size == (333, 211)
    assert np.array_equal(np.asarray(file.convert("RGB")), np.asarray(pose.image))


def test_custom_size_keeps_transparency_as_png() -> None:
    pose = synthetic_pose((400, 400), (150, 100, 250, 350))
    transparent = pose.image.convert("RGBA")
    transparent.putalpha(pose.mask)
    fmt = resolve_format("custom:300x500")
    image, _ = render_image(DecodedPose(transparent, pose.mask, pose.subject), fmt)
    file, _ = encode_and_reopen(image, fmt)
    assert file.format == "PNG" and file.mode == "RGBA" and file.size == (300, 500)
    assert file.getchannel("A").getextrema()[0] == 0
    opaque, _ = render_image(pose, fmt)
    assert encode_and_reopen(opaque, fmt)[0].format == "JPEG"


def test_jpeg_quality_search_meets_the_shopee_limit() -> None:
    """Noise does not fit 2 MB at the format's quality: the search finds a lower one that does."""
    noise = np.random.default_rng(7).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    fmt = FORMATS["shopee_product"]
    encoded = encode_export(Image.fromarray(noise), fmt)
    assert len(encoded.data) <= 2_000_000
    assert encoded.quality is not None and encoded.quality < fmt.jpeg_quality
    # The search is tight: one step up no longer fits.
    from posegen.imaging.encoding import _jpeg

    assert len(_jpeg(Image.fromarray(noise), encoded.quality + 1, None)) > 2_000_000


def test_real_person_photo_in_every_format() -> None:
    """The astronaut photo, segmented by the real model: subject box inside each safe area."""
    from skimage import data as samples

    from posegen.imaging.segmentation import segment

    photo = Image.fromarray(samples.astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    mask = segment(photo)
    box = subject_box(mask)
    assert box is not None
    pose = DecodedPose(photo, mask, box)
    for fmt in FRAMED:
        image, framing = render_image(pose, fmt)
        assert framing is not None
        if fmt.name != "a4_print":  # encoding A4 is covered once above
            file, data = encode_and_reopen(image, fmt)
            assert_file_matches_format(file, data, fmt)
        assert image.size == (fmt.width, fmt.height)
        assert framing.place(box) == framing.subject
        assert_subject_placed(framing.subject, framing, fmt)


def test_framing_prefers_a_crop_when_it_cuts_nothing() -> None:
    framing = plan_framing((1000, 1000), Box(400, 300, 600, 900), (1080, 1350))
    assert framing.covers and framing.cut_edges == {"left", "right"}


def _png_chunk_types(data: bytes) -> list[bytes]:
    from posegen.imaging.encoding import _png_chunks

    chunks = _png_chunks(data)
    assert chunks is not None
    return [kind for kind, _ in chunks]


def _idat(data: bytes) -> bytes:
    from posegen.imaging.encoding import _png_chunks

    return b"".join(body for kind, body in _png_chunks(data) or [] if kind == b"IDAT")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_original_reuses_the_stored_png_instead_of_compressing_again(mode: str) -> None:
    """The pose's stored PNG holds exactly its pixels: `original` keeps its compressed data
    (byte for byte) and only gains the sRGB profile, and the dpi when a format has one."""
    from posegen.imaging.decoding import open_image
    from posegen.imaging.encoding import SRGB_ICC, encode_png

    pose = synthetic_pose((333, 211), (100, 20, 200, 190))
    source = pose.image.convert(mode)
    if mode == "RGBA":
        source.putalpha(pose.mask.point(lambda v: max(v, 10)))
    stored = encode_png(source)
    image = open_image(stored)
    at_300_dpi = ExportFormat(
        "original_300", "Original", None, None, "source", Category.PRINT, FileType.PNG, dpi=300
    )
    for fmt in (FORMATS["original"], at_300_dpi):
        encoded = encode_export(image, fmt, stored_png=stored)
        assert _idat(encoded.data) == _idat(stored)
        assert b"iCCP" in _png_chunk_types(encoded.data)
        file = Image.open(io.BytesIO(encoded.data))
        file.load()
        assert file.mode == mode and np.array_equal(np.asarray(file), np.asarray(image))
        assert file.info["icc_profile"] == SRGB_ICC
        if fmt.dpi:
            assert tuple(round(v) for v in file.info["dpi"]) == (300, 300)
        else:
            assert "dpi" not in file.info


def _stored_variants() -> dict[str, tuple[bytes, bytes]]:
    """(stored file, the file its image was decoded from) for PNGs whose data must not be
    reused: metadata, a profile, a palette, grey, a transparency key, a cut-off file."""
    from PIL import ImageCms, PngImagePlugin

    base = synthetic_pose((120, 90), (40, 10, 80, 80)).image
    variants: dict[str, tuple[bytes, bytes]] = {}

    def save(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", **options)
        return buffer.getvalue()

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "from a camera")
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    for name, data in {
        "text": save(base, pnginfo=text),
        "foreign profile": save(base, icc_profile=lab),
        "palette": save(base.convert("P")),
        "grey": save(base.convert("L")),
        "transparent colour": save(base, transparency=BACKDROP_RGB),
    }.items():
        variants[name] = (data, data)
    whole = save(base)
    variants["cut off"] = (whole[:-3], whole)
    return variants


@pytest.mark.parametrize("name", sorted(_stored_variants()))
def test_a_stored_png_that_is_not_exactly_the_pixels_is_encoded_again(name: str) -> None:
    from posegen.imaging.decoding import open_image
    from posegen.imaging.encoding import SRGB_ICC

    stored, decoded_from = _stored_variants()[name]
    image = open_image(decoded_from)
    encoded = encode_export(image, FORMATS["original"], stored_png=stored)
    assert _png_chunk_types(encoded.data) == [b"IHDR", b"iCCP", b"IDAT", b"IEND"]
    file = Image.open(io.BytesIO(encoded.data))
    file.load()
    assert np.array_equal(np.asarray(file), np.asarray(image))
    assert file.info["icc_profile"] == SRGB_ICC and "Comment" not in file.info


def test_an_interlaced_or_other_sized_png_is_not_reused() -> None:
    import struct
    import zlib

    from posegen.imaging.decoding import open_image
    from posegen.imaging.encoding import _png_from_stored, encode_png

    image = synthetic_pose((120, 90), (40, 10, 80, 80)).image
    stored = encode_png(image)
    assert _png_from_stored(stored, open_image(stored), None) is not None
    assert _png_from_stored(stored, image.crop((0, 0, 119, 90)), None) is None
    ihdr = bytearray(stored[16:29])
    ihdr[12] = 1  # Adam7
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr), zlib.crc32(b"IHDR")))
    interlaced = stored[:16] + bytes(ihdr) + crc + stored[33:]
    assert _png_from_stored(interlaced, image, None) is None
