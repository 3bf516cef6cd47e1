"""Session `selfie`: MediaPipe's selfie segmentation, a fast model made for people.

Two converted models (`posegen models fetch --model selfie`): a square one (256x256 input) and a
landscape one (256 wide, 144 high), chosen by the image's shape. The model sees the whole photo
stretched to its input, as MediaPipe feeds it, and returns a person probability; the mask is
that probability, not min-max stretched like u2netp's, so a photo without a person can come out
empty where u2netp always finds some subject.

Built on posegen's `OnnxSession`, so it imports no rembg; `segmentation.usable_models`
registers `selfie` with rembg, and `rembg.remove(img, session=...)` takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort
from PIL import Image

from posegen.imaging.model_files import model_path
from posegen.imaging.onnx_session import OnnxSession

# The square input is 1:1, the landscape one 16:9; above this width/height ratio (their geometric
# middle) an image is closer to the landscape model's shape and less distorted by stretching.
LANDSCAPE_FROM_RATIO: Final = (256 / 144) ** 0.5
# As in segmentation.py: Pillow's box pre-reduction before Lanczos, indistinguishable at 2.
_REDUCING_GAP: Final = 2.0


class SelfieSession(OnnxSession):
    """Person segmentation with MediaPipe's selfie models; `inner_session` is the square one."""

    # How `predict` upscales the mask (a probability map: bilinear is smooth enough, and half
    # Lanczos's cost at 1024x1536); `segmentation.segment` upscales with the same filter.
    mask_resample: Final = Image.Resampling.BILINEAR

    def __init__(
        self, model_name: str, sess_opts: ort.SessionOptions, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, sess_opts, *args, **kwargs)
        self.landscape_session = ort.InferenceSession(
            str(self.landscape_path(*args, **kwargs)),
            sess_options=sess_opts,
            providers=self.inner_session.get_providers(),
        )

    def input_size_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the model takes for an image of `size`: the landscape model's for
        wide images, the square model's otherwise."""
        return _input_size(self._session_for(size))

    def predict(self, img: Image.Image, *args: Any, **kwargs: Any) -> list[Image.Image]:
        """One mask, mode "L", the size of `img`: the person probability times 255."""
        session = self._session_for(img.size)
        size = _input_size(session)
        rgb = img.convert("RGB")
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
        pixels = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)[np.newaxis] / 255.0
        (probability,) = session.run(None, {session.get_inputs()[0].name: pixels})
        levels = np.rint(np.clip(probability[0, 0], 0.0, 1.0) * 255.0).astype(np.uint8)
        mask = Image.fromarray(levels)  # 2-D uint8: mode "L"
        if mask.size != img.size:
            mask = mask.resize(img.size, self.mask_resample)
        return [mask]

    def _session_for(self, size: tuple[int, int]) -> ort.InferenceSession:
        width, height = size
        if width > height * LANDSCAPE_FROM_RATIO:
            return self.landscape_session
        return self.inner_session

    @classmethod
    def download_models(cls, *args: Any, **kwargs: Any) -> str:
        """The square model's path. Never downloads: posegen fetches and converts the models
        (`posegen models fetch --model selfie`); a missing file is an error here."""
        path = super().download_models(*args, **kwargs)
        if not cls.landscape_path().is_file():
            raise FileNotFoundError(
                f"{cls.landscape_path()} is missing: run `posegen models fetch --model selfie`."
            )
        return path

    @classmethod
    def landscape_path(cls, *args: Any, **kwargs: Any) -> Path:
        return model_path(cls.name()).with_name(f"{cls.name()}_landscape.onnx")

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        return "selfie"


def _input_size(session: ort.InferenceSession) -> tuple[int, int]:
    _, _, height, width = session.get_inputs()[0].shape
    return (width, height)
