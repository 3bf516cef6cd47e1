"""The base of posegen's own segmentation sessions: one ONNX model on onnxruntime, without rembg.

Importing any of rembg's sessions runs `rembg/__init__`, which imports pymatting, scipy,
scikit-image and numba (~200 MB of a warm process, and seconds of start-up) for features posegen
never uses: alpha matting and mask post-processing. posegen's own sessions keep rembg's session
interface (`predict(img) -> [mask]`, `inner_session`, `model_name`, the class methods rembg's
registry reads), so `rembg.remove(img, session=...)` takes them and `segmentation.usable_models`
registers them with rembg; loading one imports only onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
from PIL import Image

from posegen.imaging.model_files import model_path


class OnnxSession:
    """A model posegen provisions, run by onnxruntime on the CPU; subclasses define `predict`."""

    def __init__(
        self, model_name: str, sess_opts: ort.SessionOptions, *args: Any, **kwargs: Any
    ) -> None:
        self.model_name = model_name
        # posegen runs on CPU machines; rembg would probe for CUDA/ROCm/OpenVINO here.
        providers = kwargs.pop("providers", None) or ["CPUExecutionProvider"]
        self.inner_session = ort.InferenceSession(
            self.download_models(*args, **kwargs), sess_options=sess_opts, providers=providers
        )

    def predict(self, img: Image.Image, *args: Any, **kwargs: Any) -> list[Image.Image]:
        raise NotImplementedError

    @classmethod
    def download_models(cls, *args: Any, **kwargs: Any) -> str:
        """The model file's path. Never downloads: `posegen models fetch` provisions posegen's
        models; a missing file is an error here."""
        path = model_path(cls.name())
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `posegen models fetch --model {cls.name()}`."
            )
        return str(path)

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        raise NotImplementedError

    # What rembg's registry and CLI ask of a session class.
    @classmethod
    def is_local(cls, *args: Any, **kwargs: Any) -> bool:
        return True

    @classmethod
    def requires_credentials(cls, *args: Any, **kwargs: Any) -> bool:
        return False

    @classmethod
    def has_usage_cost(cls, *args: Any, **kwargs: Any) -> bool:
        return False
