"""Session `u2netp`: rembg's u2netp pre- and post-processing, step for step, without rembg.

The same arithmetic as `rembg.sessions.u2netp.U2netpSession` and rembg's `BaseSession.normalize`
(rembg 2.x): Lanczos to 320x320, scale by the image's maximum, ImageNet mean and deviation in
float64, then float32; the first output min-max stretched, truncated to uint8, Lanczos back to
the image's size. With the same onnxruntime options the masks are identical to rembg's
(tests/imaging/test_own_sessions.py); the test is what catches a rembg upgrade that changes them.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from PIL import Image

from posegen.imaging.onnx_session import OnnxSession

_MEAN: Final = np.array([0.485, 0.456, 0.406])
_STD: Final = np.array([0.229, 0.224, 0.225])
_INPUT_SIZE: Final = (320, 320)


class U2netpSession(OnnxSession):
    """U-2-Net's small variant: a 320x320 RGB input, the subject's saliency as first output."""

    def predict(self, img: Image.Image, *args: Any, **kwargs: Any) -> list[Image.Image]:
        """One mask, mode "L", the size of `img`."""
        outputs = self.inner_session.run(None, self.model_input(img))
        pred = outputs[0][:, 0, :, :]
        high, low = np.max(pred), np.min(pred)
        pred = np.squeeze((pred - low) / (high - low))
        mask = Image.fromarray((pred * 255).astype("uint8"))  # 2-D uint8: mode "L"
        return [mask.resize(img.size, Image.Resampling.LANCZOS)]

    def model_input(self, img: Image.Image) -> dict[str, np.ndarray]:
        """rembg's `normalize` for u2netp: the input tensor by name (also the int8 calibration)."""
        pixels = np.array(img.convert("RGB").resize(_INPUT_SIZE, Image.Resampling.LANCZOS))
        scaled = pixels / max(np.max(pixels), 1e-6)
        tensor = ((scaled - _MEAN) / _STD).transpose((2, 0, 1))[np.newaxis].astype(np.float32)
        return {self.inner_session.get_inputs()[0].name: tensor}

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        return "u2netp"
