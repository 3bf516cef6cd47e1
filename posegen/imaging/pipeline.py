"""The background-change render steps, storage key in → storage key out.

Each step reads what it needs from storage and writes its product atomically, so the Prefect
tasks around them pass only keys, and a retried step simply runs again.

The steps of one flow run execute one after another in the same process, so each keeps the
images it decoded or produced in a small process-wide cache keyed by storage key: the next
step reads them from memory instead of decoding the PNG it was just written (a miss, as in a
retry in another process, just reads storage). Only what a step writes is cached, and a write
replaces the cached image, so the cache never disagrees with this process's own writes; the
images read without being written here (an original, a mask) do not change once stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from PIL import Image

from posegen.domain.background import BackgroundChange, PoseImages
from posegen.imaging.backgrounds import source_for
from posegen.imaging.compositing import composite
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_png
from posegen.imaging.segmentation import cutout, segment
from posegen.storage import Storage

# One change needs three images (original, mask, background); one spare for a second pose.
_CACHED_IMAGES: Final = 4

_recent: OrderedDict[tuple[str, str], Image.Image] = OrderedDict()
_recent_lock = threading.Lock()


def remove_background(storage: Storage, images: PoseImages) -> str:
    """Segment the original once; the mask only depends on it, so a later change reuses it.

    Only the mask is stored: the cut-out is the original with the mask as alpha, cheaper to
    rebuild in `composite_pose` than to write (an RGBA PNG) and read back.
    """
    if not storage.exists(images.mask_key):
        mask = segment(_load(storage, images.original_key))
        _store(storage, images.mask_key, mask)
    return images.mask_key


def build_background(storage: Storage, images: PoseImages, change: BackgroundChange) -> str:
    background = source_for(change.background_mode).build(change, images.size, storage)
    _store(storage, images.background_key, background)
    return images.background_key


def composite_pose(
    storage: Storage,
    images: PoseImages,
    mask_key: str | None = None,
    background_key: str | None = None,
) -> str:
    """Subject over the new background, written to the pose's `_bg.png` key in one atomic write.

    `mask_key` and `background_key` are what the two steps before returned (the pose's own
    keys when omitted), so a flow can hand each step's result to the next.
    """
    original = _load(storage, images.original_key)
    mask = _load(storage, mask_key or images.mask_key).convert("L")
    if mask.size != original.size:
        mask = mask.resize(original.size, Image.Resampling.LANCZOS)
    background = _load(storage, background_key or images.background_key)
    result = composite(cutout(original, mask), background)
    storage.write_bytes(images.output_key, encode_png(result), content_type="image/png")
    return images.output_key


def forget_cached() -> None:
    """Drop every cached image (benchmarks and tests that rewrite storage behind our back)."""
    with _recent_lock:
        _recent.clear()


def _load(storage: Storage, key: str) -> Image.Image:
    """The image at `key`, from this process's cache or decoded; callers must not modify it."""
    with _recent_lock:
        found = _recent.get((storage.url, key))
        if found is not None:
            _recent.move_to_end((storage.url, key))
            return found
    image = open_image(storage.read_bytes(key))
    _remember(storage, key, image)
    return image


def _store(storage: Storage, key: str, image: Image.Image) -> None:
    storage.write_bytes(key, encode_png(image), content_type="image/png")
    _remember(storage, key, image)


def _remember(storage: Storage, key: str, image: Image.Image) -> None:
    with _recent_lock:
        _recent[(storage.url, key)] = image
        _recent.move_to_end((storage.url, key))
        while len(_recent) > _CACHED_IMAGES:
            _recent.popitem(last=False)
