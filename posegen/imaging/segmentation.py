"""Subject segmentation with rembg's models: one session per model per process, masks and cutouts.

The models posegen provisions (u2netp, u2netp_int8, selfie) run in posegen's own sessions
(`posegen.imaging.onnx_session`): rembg's pre- and post-processing without `import rembg`, which
would pull pymatting, scipy, scikit-image and numba into every warm process (~200 MB, seconds).
Any other rembg model gets rembg's own session, imported only inside `get_session`.

The model sees a small image (u2netp: 320x320) whatever the photo's size, so `segment` shrinks
the photo to the model's input size itself, with a fast box pre-reduction, and upscales only
the mask: rembg's own path resizes the full photo with pure Lanczos inside `predict`, and
then resizes the mask once more to the size it was given (bench/change_bench.py: the mask
matches rembg's own at IoU 0.9997, threshold 128).
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Final

from PIL import Image, ImageChops

from posegen.config import get_settings
from posegen.errors import ServiceUnavailable
from posegen.imaging.model_files import (
    PROVISIONED_MODELS,
    configure_rembg_home,
    has_model,
    model_path,
)

if TYPE_CHECKING:
    import onnxruntime
    from rembg.sessions.base import BaseSession

    from posegen.imaging.onnx_session import OnnxSession

    Session = BaseSession | OnnxSession

# Pillow's box pre-reduction before Lanczos: at a gap of 2 the result is indistinguishable from
# pure Lanczos (Pillow's docs) and a 1024x1536 → 320x320 shrink is several times faster.
_REDUCING_GAP: Final = 2.0

# posegen's own session per model it provisions (model_files.PROVISIONED_MODELS), one module each.
_OWN_SESSIONS: Final = {
    "u2netp": "posegen.imaging.u2netp_session:U2netpSession",
    "u2netp_int8": "posegen.imaging.u2netp_int8_session:U2netpInt8Session",
    "selfie": "posegen.imaging.selfie_session:SelfieSession",
}

_sessions: dict[str, Session] = {}
_sessions_lock = threading.Lock()


def get_session(model: str | None = None) -> Session:
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
    rgb = _flatten_on_white(image) if alpha is not None else image.convert("RGB")
    masks = session.predict(model_sized(rgb, session))
    if not masks:
        raise RuntimeError(f"rembg session {session.model_name!r} returned no mask")
    mask = masks[0].convert("L")
    # Models that return several masks (one per object) mean "any of these is subject".
    for extra in masks[1:]:
        mask = ImageChops.lighter(mask, extra.convert("L"))
    if mask.size != image.size:
        # The filter the session's own `predict` upscales with, so the mask is rembg.remove's.
        resample = getattr(session, "mask_resample", Image.Resampling.LANCZOS)
        mask = mask.resize(image.size, resample)
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


def usable_models() -> list[str]:
    """rembg models posegen can segment with: local, credential-free, one file named after them.

    Excluded: remote backends (they would send users' photos to a third party), `*_custom`
    sessions (they need a model path) and `sam` (it needs prompts and ships two files).
    Included: posegen's own sessions, `selfie` and `u2netp_int8`, registered with rembg here.
    Imports rembg, so only call it where rembg is about to be used anyway.
    """
    configure_rembg_home()
    from rembg.sessions import sessions

    for name in _OWN_SESSIONS:
        _register(_own_session_class(name))
    return sorted(
        name
        for name, session_class in sessions.items()
        if session_class.is_local()
        and not session_class.requires_credentials()
        and not name.endswith("_custom")
        and name != "sam"
    )


def _register(session_class: type[OnnxSession]) -> None:
    """Make a session of posegen's a name `rembg.new_session` knows (idempotent). Not among
    rembg's downloadable models: `rembg d` cannot fetch it."""
    from rembg import sessions as rembg_sessions

    name = session_class.name()
    if name in rembg_sessions.sessions:
        return
    rembg_sessions.sessions[name] = session_class
    # rembg's factory and CLI hold these very lists, so appending reaches them.
    rembg_sessions.sessions_class.append(session_class)
    rembg_sessions.sessions_names.append(name)
    rembg_sessions.sessions_names_no_credentials.append(name)


def model_sized(image: Image.Image, session: Session) -> Image.Image:
    """`image` at the model's fixed input size, so `predict` neither resizes the full photo nor
    upscales the mask to it (the caller upscales the mask once); unchanged for a model whose
    input size is not fixed, or when the photo is already smaller. A session with several input
    shapes (`selfie`: square and landscape) says which one the image gets."""
    input_size_for = getattr(session, "input_size_for", None)
    size = input_size_for(image.size) if input_size_for else _input_size(session)
    if size is None or (image.width <= size[0] and image.height <= size[1]):
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)


def _input_size(session: Session) -> tuple[int, int] | None:
    """(width, height) of the model's image input when the ONNX graph fixes it (N, C, H, W)."""
    inner = getattr(session, "inner_session", None)
    try:
        shape = inner.get_inputs()[0].shape if inner is not None else None
    except (AttributeError, IndexError):
        return None
    if not shape or len(shape) != 4:
        return None
    height, width = shape[2], shape[3]
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return (width, height)
    return None


def _session_options() -> onnxruntime.SessionOptions:
    """One inference thread per usable core (or `POSEGEN_ONNX_THREADS`, which a warm pool sets
    so that its processes together use each core once), no spin-waiting between operators, and
    no CPU memory arena.

    onnxruntime's default worker threads spin while idle: with several flow runs (the
    background-change limit is 3) and test suites sharing two cores, the spinning threads take
    the CPU the other runs need; without spinning a lone run lost nothing measurable
    (bench/change_bench.py --threads).

    The arena keeps the largest working set a run ever needed, rounded up to powers of two:
    ~440 MB for u2netp at 320x320, held for the life of a warm process that is idle most of the
    time. Without it a run's buffers go back to the system when it ends (bench/memory_bench.py:
    ~+50 MB instead of ~+490 MB after the first runs), for slower inference, since every run
    faults its buffers in again (bench/RESULTS.md, issue 16 target 5, has both figures).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = get_settings().onnx_threads or _usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    return options


def _usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity else (os.cpu_count() or 1))


def _new_session(name: str) -> Session:
    # rembg reads REMBG_HOME from the environment when a session looks for its file (and code
    # that uses rembg beside posegen's own sessions expects it set, as it always was).
    configure_rembg_home()
    if name in _OWN_SESSIONS:
        return _new_own_session(name)
    usable = usable_models()
    if name not in usable:
        raise ServiceUnavailable(
            f"POSEGEN_REMBG_MODEL={name!r} is not a segmentation model posegen can use; "
            f"choose one of: {', '.join(usable)}."
        )
    from rembg import new_session

    try:
        return new_session(name, sess_opts=_session_options())
    except Exception as exc:
        raise _load_failed(name, exc) from exc


def _new_own_session(name: str) -> OnnxSession:
    """A session of posegen's own for a model it provisions: no rembg import."""
    if not has_model(name):
        raise ServiceUnavailable(
            f"The segmentation model {name} is missing or damaged at {model_path(name)}: "
            f"run `posegen models fetch` with `--model {name}`."
        )
    try:
        return _own_session_class(name)(name, _session_options())
    except Exception as exc:
        raise _load_failed(name, exc) from exc


def _own_session_class(name: str) -> type[OnnxSession]:
    """posegen's session class for a model it provisions, imported only now: importing
    segmentation loads no onnxruntime (the API process never segments)."""
    module, _, attribute = _OWN_SESSIONS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def _load_failed(name: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Could not load the segmentation model {name!r} from {model_path(name)}: {exc}. "
        "Run `posegen models fetch` (models other than "
        f"{', '.join(sorted(PROVISIONED_MODELS))} download from GitHub)."
    )


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB for the model; colours hidden under transparency must not look like a subject."""
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
