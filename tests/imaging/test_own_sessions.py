"""posegen's own sessions against rembg's: the same masks, and a warm path that imports no rembg."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.segmentation import _session_options, get_session, segment
from posegen.imaging.u2netp_session import U2netpSession

if TYPE_CHECKING:
    from rembg.sessions.base import BaseSession

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "posegen" / "samples").glob("*.jpg"))
# What `import rembg` pulls in for alpha matting and mask post-processing, which posegen never uses.
REMBG_ONLY_MODULES = ("rembg", "scipy", "skimage", "pymatting", "numba")


@pytest.fixture(scope="module")
def models() -> None:
    fetch_model("u2netp")
    fetch_model("selfie")


@pytest.fixture(scope="module")
def rembg_u2netp(models: None) -> BaseSession:
    """rembg's own u2netp session, with rembg's default options."""
    from rembg import new_session

    return new_session("u2netp")


def _photo(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _iou(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a) >= 128, np.asarray(b) >= 128
    union = (x | y).sum()
    return 1.0 if union == 0 else float((x & y).sum() / union)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_u2netp_session_predicts_rembgs_mask_byte_for_byte(models: None, sample: Path) -> None:
    from rembg.sessions.u2netp import U2netpSession as RembgU2netpSession

    photo = _photo(sample)
    (theirs,) = RembgU2netpSession("u2netp", _session_options()).predict(photo)

    (ours,) = get_session("u2netp").predict(photo)

    assert isinstance(get_session("u2netp"), U2netpSession)
    assert (ours.mode, ours.size) == ("L", photo.size)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_warm_path_u2netp_mask_is_rembg_removes_own(
    rembg_u2netp: BaseSession, sample: Path
) -> None:
    from rembg import remove

    photo = _photo(sample)
    theirs = remove(photo, session=rembg_u2netp, only_mask=True)
    assert isinstance(theirs, Image.Image)

    assert _iou(segment(photo, model="u2netp"), theirs) >= 0.999


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_warm_path_selfie_mask_is_rembg_removes_own(models: None, sample: Path) -> None:
    from rembg import remove

    photo = _photo(sample)
    theirs = remove(photo, session=get_session("selfie"), only_mask=True)
    assert isinstance(theirs, Image.Image)

    assert _iou(segment(photo, model="selfie"), theirs) >= 0.999


_WARM_PATH = """
import json, sys
from PIL import Image
import flows.background_change, posegen.runtime.warm_child
from posegen.imaging.warm import warm_up
from posegen.imaging.segmentation import segment
warm_up()
with Image.open(sys.argv[1]) as image:
    mask = segment(image.convert("RGB").resize((1024, 1536)))
print(json.dumps({
    "subject": int((mask.point(lambda v: 255 if v >= 128 else 0).histogram()[255])),
    "loaded": [m for m in sys.argv[2:] if m in sys.modules],
}))
"""


@pytest.mark.parametrize("model", ["u2netp", "selfie"])
def test_warm_path_imports_none_of_rembgs_matting_stack(
    models: None, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a warm process imports and runs (the flow, warm-up, a full-size segmentation)."""
    monkeypatch.setenv("POSEGEN_REMBG_MODEL", model)
    done = subprocess.run(
        [sys.executable, "-c", _WARM_PATH, str(SAMPLES[0]), *REMBG_ONLY_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["subject"] > 0
