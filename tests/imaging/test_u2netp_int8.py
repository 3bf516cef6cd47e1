"""`u2netp_int8`: the int8 u2netp `posegen models fetch` makes, against rembg's own u2netp."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from PIL import Image

from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.model_files import U2NETP_MD5, has_model, model_path
from posegen.imaging.segmentation import get_session, segment, usable_models

if TYPE_CHECKING:
    from rembg.sessions.base import BaseSession

SAMPLES = Path(__file__).resolve().parents[2] / "posegen" / "samples"


@pytest.fixture(scope="module")
def int8_model() -> Path:
    """Quantized once for these tests, through the path `posegen models fetch` takes."""
    return fetch_model("u2netp_int8", force=True)


@pytest.fixture(scope="module")
def rembg_u2netp() -> BaseSession:
    """rembg's own u2netp session, with rembg's default options."""
    from rembg import new_session

    return new_session("u2netp")


def _mask(image: Image.Image) -> np.ndarray:
    return np.asarray(image) >= 128


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.jpg")))
def test_int8_mask_matches_rembgs_own_u2netp_mask(
    int8_model: Path, rembg_u2netp: BaseSession, name: str
) -> None:
    from rembg import remove

    photo = Image.open(SAMPLES / name).convert("RGB")
    theirs = remove(photo, session=rembg_u2netp, only_mask=True)
    assert isinstance(theirs, Image.Image)

    ours = segment(photo, model="u2netp_int8")

    a, b = _mask(ours), _mask(theirs)
    score = float((a & b).sum() / (a | b).sum())
    print(f"{name}: IoU u2netp_int8 vs rembg u2netp {score:.4f}")
    assert score >= 0.98


def test_fetch_writes_u2netp_quantized_with_one_stage_in_float(int8_model: Path) -> None:
    from posegen.imaging.quantize_u2netp import FLOAT_NODES

    model = onnx.load(str(int8_model))

    assert int8_model == model_path("u2netp_int8") and has_model("u2netp_int8")
    assert {p.key: p.value for p in model.metadata_props}["source_md5"] == U2NETP_MD5
    nodes = {node.name: node for node in model.graph.node}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    # Every other convolution reads int8 weights through a DequantizeLinear.
    dequantized = {
        out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output
    }
    float_convs = [c.name for c in convs if c.input[1] not in dequantized]
    assert float_convs == [n for n in FLOAT_NODES if nodes[n].op_type == "Conv"]
    assert len(convs) == 119


def test_u2netp_int8_is_a_usable_model_with_u2netps_session(int8_model: Path) -> None:
    from posegen.imaging.u2netp_session import U2netpSession

    session = get_session("u2netp_int8")

    assert "u2netp_int8" in usable_models()
    assert isinstance(session, U2netpSession) and session.model_name == "u2netp_int8"
    assert get_session("u2netp") is not session
