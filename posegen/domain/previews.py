"""Format previews for the web app's selector: one pose in one format, small, by the export code.

Only for a pose whose mask is known (recorded by its first export or background change): a
preview must not segment in the serving process, so without a mask the page keeps its framed
photo and the real preview appears once the pose has been exported or changed.
"""

from __future__ import annotations

import io

from PIL import Image

from posegen.db.models import Pose
from posegen.domain.exports import ExportFormat
from posegen.imaging.decoding import open_image
from posegen.imaging.preview import render_preview
from posegen.storage import Storage

PREVIEW_SIDE = 256
_JPEG_QUALITY = 82


def has_preview(pose: Pose) -> bool:
    return pose.mask_key is not None


def preview_jpeg(storage: Storage, pose: Pose, fmt: ExportFormat) -> bytes | None:
    """The preview as JPEG bytes, or None when the pose has no mask yet."""
    if pose.mask_key is None:
        return None
    original = open_image(storage.read_bytes(pose.original_image_key))
    mask = Image.open(io.BytesIO(storage.read_bytes(pose.mask_key)))
    background = None
    if pose.background_changed and pose.background_key is not None:
        background = open_image(storage.read_bytes(pose.background_key))
    image = render_preview(
        original, mask, fmt, PREVIEW_SIDE, original=original, background=background
    )
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=_JPEG_QUALITY)
    return out.getvalue()
