"""The background-change render steps, storage key in → storage key out.

Each step reads what it needs from storage and writes its product atomically, so the Prefect
tasks around them pass only keys, and a retried step simply runs again.
"""

from __future__ import annotations

from PIL import Image

from posegen.domain.background import BackgroundChange, PoseImages
from posegen.imaging.backgrounds import source_for
from posegen.imaging.compositing import composite
from posegen.imaging.decoding import encode_png, open_image
from posegen.imaging.segmentation import cutout, segment
from posegen.storage import Storage


def _load(storage: Storage, key: str) -> Image.Image:
    return open_image(storage.read_bytes(key))


def remove_background(storage: Storage, images: PoseImages) -> str:
    """Segment the original once; the mask only depends on it, so a later change reuses it."""
    if not (storage.exists(images.mask_key) and storage.exists(images.cutout_key)):
        original = _load(storage, images.original_key)
        mask = segment(original)
        storage.write_bytes(images.mask_key, encode_png(mask), content_type="image/png")
        storage.write_bytes(
            images.cutout_key, encode_png(cutout(original, mask)), content_type="image/png"
        )
    return images.cutout_key


def build_background(storage: Storage, images: PoseImages, change: BackgroundChange) -> str:
    background = source_for(change.background_mode).build(change, images.size, storage)
    storage.write_bytes(images.background_key, encode_png(background), content_type="image/png")
    return images.background_key


def composite_pose(storage: Storage, images: PoseImages) -> str:
    """Subject over the new background, written to the pose's `_bg.png` key in one atomic write."""
    subject = _load(storage, images.cutout_key)
    background = _load(storage, images.background_key)
    result = composite(subject.convert("RGBA"), background)
    storage.write_bytes(images.output_key, encode_png(result), content_type="image/png")
    return images.output_key
