"""Hostile files on POST /uploads: refused with 400, nothing stored, no credits touched; and
what is accepted is stored as our own re-encoding, never the bytes that were sent.

tests/api/test_uploads.py covers plain text, empty files, a 48-megapixel bomb, an animated PNG
and a still GIF; these are the other shapes an attacker (or a broken phone) sends.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from posegen.storage import get_storage
from tests.api.conftest import BASE, Account, balance, ledger, png_bytes

pytestmark = pytest.mark.usefixtures("no_rate_limits")


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _noise(size: tuple[int, int] = (256, 256)) -> Image.Image:
    """Incompressible pixels, so a cut anywhere in the file cuts real image data."""
    rng = random.Random(7)
    return Image.frombytes(
        "RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_chunk_before_iend(png: bytes, chunk: bytes) -> bytes:
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def _claiming_size(png: bytes, width: int, height: int) -> bytes:
    """A tiny PNG whose header says it is enormous (the CRC fixed, so it parses)."""
    ihdr = png[16:29]
    patched = struct.pack(">II", width, height) + ihdr[8:]
    return png[:8] + _chunk(b"IHDR", patched) + png[33:]


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue", "green")]
    return _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated-png": (lambda: _encoded(_noise(), "PNG")[:60_000], "damaged or incomplete"),
    "truncated-jpeg": (
        lambda: _encoded(_noise(), "JPEG", quality=95)[:20_000],
        "damaged or incomplete",
    ),
    # 10000x10000 of one colour: ~12 KB on the wire, 100 megapixels once decoded.
    "100-megapixels": (lambda: _encoded(Image.new("1", (10_000, 10_000)), "PNG"), "too large"),
    "header-claims-65535x65535": (
        lambda: _claiming_size(png_bytes((8, 8)), 65_535, 65_535),
        "too large",
    ),
    "ztxt-bomb": (
        lambda: _with_chunk_before_iend(
            png_bytes((8, 8)), _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 50_000_000))
        ),
        "damaged or incomplete",  # Pillow refuses text chunks over MAX_TEXT_CHUNK
    ),
    "animated-gif": (lambda: _animated("GIF"), "GIF images are not supported"),
    "animated-webp": (lambda: _animated("WEBP"), "Animated"),
    "tiff": (lambda: _encoded(Image.new("RGB", (16, 16)), "TIFF"), "TIFF images are not supported"),
    "html-named-png": (lambda: b"<html><script>alert(1)</script></html>", "not an image"),
    "svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        "not an image",
    ),
    "pdf": (lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "not an image"),
    "png-signature-only": (lambda: b"\x89PNG\r\n\x1a\n", "not an image"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_upload_is_400_stores_nothing_and_charges_nothing(
    client: TestClient, db_url: str, account: Account, case: str
) -> None:
    make, message_part = HOSTILE[case]

    response = client.post(
        f"{BASE}/uploads",
        files={"file": ("background.png", make(), "image/png")},
        headers=account.headers,
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "ValidationFailed"
    assert message_part in response.json()["message"]
    assert get_storage().list("uploads/") == []
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []


def test_bytes_hidden_in_an_accepted_image_are_not_stored(
    client: TestClient, account: Account
) -> None:
    """A valid PNG with a script in a text chunk and a ZIP after its end (a polyglot)."""
    marker = b"posegen-polyglot-payload"
    png = _with_chunk_before_iend(png_bytes((40, 30)), _chunk(b"tEXt", b"Comment\0" + marker))
    polyglot = png + b"PK\x03\x04" + marker

    response = client.post(
        f"{BASE}/uploads",
        files={"file": ("bg.png", polyglot, "image/png")},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    stored = get_storage().read_bytes(response.json()["key"])
    assert marker not in stored
    assert stored.endswith(b"IEND\xaeB`\x82")
