"""u2netp quantized to int8 (`u2netp_int8`): how posegen makes the file (a build-time tool).

rembg publishes no int8 u2netp, so `posegen models fetch --model u2netp_int8` quantizes the
verified u2netp here: static quantization with onnxruntime, QDQ format, uint8 activations and
7-bit int8 weights per output channel, the activation ranges calibrated on the bundled sample
photos fed exactly as `segment()` feeds the model. On a CPU with AVX512-VNNI its inference is
2.1-2.6x faster than u2netp's, and its masks match rembg's own u2netp masks at IoU >= 0.99 on
the sample photos (bench/RESULTS.md, "u2netp int8").

Its session is `posegen.imaging.u2netp_int8_session`; onnx and the quantizer are imported
only by `quantize`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from PIL import Image

from posegen.errors import PermanentError
from posegen.imaging.model_files import U2NETP_MD5, model_path
from posegen.imaging.segmentation import get_session, model_sized

if TYPE_CHECKING:
    from posegen.imaging.u2netp_session import U2netpSession

# One decoder stage concatenates an activation that reaches ~230 with ones below ~10: quantized
# together on one uint8 scale the small ones vanish and the mask falls to IoU 0.6-0.8. The concat
# and the convolution reading it stay float (bench/RESULTS.md, "u2netp int8").
FLOAT_NODES: Final = ("Concat_786", "Conv_787")
# Per-channel weight scales need DequantizeLinear's `axis`, which starts at opset 13; u2netp is 11.
_OPSET: Final = 13


def quantize() -> bytes:
    """The int8 model made from the verified u2netp, which must be in place
    (`fetch_model("u2netp")`). The same inputs give the same bytes."""
    import onnx
    from onnx import version_converter
    from onnxruntime import __version__ as onnxruntime_version
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = version_converter.convert_version(onnx.load(str(model_path("u2netp"))), _OPSET)
    with tempfile.TemporaryDirectory(prefix="posegen-u2netp-int8-") as folder:
        prepared, output = Path(folder) / "prepared.onnx", Path(folder) / "u2netp_int8.onnx"
        # The quantizer's own preparation: shapes inferred, u2netp's shape arithmetic folded.
        quant_pre_process(source, prepared)
        missing = set(FLOAT_NODES) - {node.name for node in onnx.load(str(prepared)).graph.node}
        if missing:
            # The quantizer ignores unknown names: it would quantize them and ruin the mask.
            raise PermanentError(f"u2netp has no nodes {sorted(missing)} to keep in float.")
        quantize_static(
            prepared,
            output,
            _Calibration(get_session("u2netp")),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: no int16 saturation on CPUs without VNNI; on VNNI as fast and as exact.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(FLOAT_NODES),
        )
        model = onnx.load(str(output))
    onnx.helper.set_model_props(
        model,
        {
            "source_md5": U2NETP_MD5,
            "quantization": (
                f"onnxruntime {onnxruntime_version} quantize_static: QDQ, uint8 activations "
                f"(MinMax on posegen/samples/*.jpg), 7-bit int8 per-channel weights; float: "
                f"{', '.join(FLOAT_NODES)}"
            ),
        },
    )
    return model.SerializeToString()


class _Calibration:
    """The quantizer's calibration reader: each sample photo as the model's input tensor."""

    def __init__(self, session: U2netpSession) -> None:
        self._inputs = _calibration_inputs(session)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._inputs, None)


def _calibration_inputs(session: U2netpSession) -> Iterator[dict[str, np.ndarray]]:
    # segment()'s shrink, then rembg's u2netp normalisation (what U2netpSession.predict feeds).
    for photo in sorted(Path(str(files("posegen") / "samples")).glob("*.jpg")):
        with Image.open(photo) as image:
            rgb = image.convert("RGB")
        yield session.model_input(model_sized(rgb, session))
