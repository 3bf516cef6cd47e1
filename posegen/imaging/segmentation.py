"""Subject segmentation with rembg: one session per model per process, masks and cutouts.

rembg is imported only inside `get_session`: importing it compiles numba code (~35 s on a cold
cache) and loads onnxruntime, a cost only processes that actually segment should pay.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from PIL import Image, ImageChops

from posegen.config import get_settings
from posegen.errors import ServiceUnavailable
from posegen.imaging.model_files import (
    configure_rembg_home,
    has_model,
    model_path,
    usable_models,
)

if TYPE_CHECKING:
    from rembg.sessions.base import BaseSession

_sessions: dict[str, BaseSession] = {}
_sessions_lock = threading.Lock()


def get_session(model: str | None = None) -> BaseSession:
    """The process's session for `model` (default: the `rembg_model` setting), created once.

    Loading a model takes about a second and a session is safe to share between threads, so
    every caller in a worker process reuses the same one.
    """
    name = model or get_settings().rembg_model
    session = _sessions.get(name)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = _new_session(name)
            _sessions[name] = session
    return session


def segment(image: Image.Image, *, model: str | None = None) -> Image.Image:
    """The subject's mask: mode "L", same size as `image`, 255 = subject, 0 = background.

    Pixels that are already transparent in `image` stay background whatever the model says.
    """
    session = get_session(model)
    alpha = image.convert("RGBA").getchannel("A") if image.has_transparency_data else None
    masks = session.predict(_flatten_on_white(image) if alpha is not None else image.convert("RGB"))
    if not masks:
        raise RuntimeError(f"rembg session {session.model_name!r} returned no mask")
    mask = masks[0].convert("L")
    # Models that return several masks (one per object) mean "any of these is subject".
    for extra in masks[1:]:
        mask = ImageChops.lighter(mask, extra.convert("L"))
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.LANCZOS)
    if alpha is not None:
        mask = ImageChops.darker(mask, alpha)
    return mask


def cutout(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The subject alone: `image` as RGBA with its alpha replaced by `mask`."""
    if mask.size != image.size:
        raise ValueError(f"mask size {mask.size} differs from image size {image.size}")
    subject = image.convert("RGBA")
    subject.putalpha(mask.convert("L"))
    return subject


def _new_session(name: str) -> BaseSession:
    if name == "u2netp" and not has_model(name):
        raise ServiceUnavailable(
            f"The segmentation model u2netp is missing or damaged at {model_path(name)}: "
            "run `posegen models fetch`."
        )
    # rembg reads REMBG_HOME from the environment when a session looks for its file.
    configure_rembg_home()
    usable = usable_models()
    if name not in usable:
        raise ServiceUnavailable(
            f"POSEGEN_REMBG_MODEL={name!r} is not a segmentation model posegen can use; "
            f"choose one of: {', '.join(usable)}."
        )
    from rembg import new_session

    try:
        return new_session(name)
    except Exception as exc:
        raise ServiceUnavailable(
            f"Could not load the segmentation model {name!r} from {model_path(name)}: {exc}. "
            "Run `posegen models fetch` (models other than u2netp download from GitHub)."
        ) from exc


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB for the model; colours hidden under transparency must not look like a subject."""
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
