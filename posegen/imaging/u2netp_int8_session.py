"""The rembg session of `u2netp_int8` (made by `posegen.imaging.quantize_u2netp`).

Importing this module imports rembg; `segmentation.usable_models` registers the session.
"""

from __future__ import annotations

from pathlib import Path

from rembg.sessions.u2netp import U2netpSession


class U2netpInt8Session(U2netpSession):
    """rembg's u2netp session (same input, same mask post-processing) on the int8 file."""

    @classmethod
    def download_models(cls, *args, **kwargs) -> str:
        """The int8 file's path. Never downloads: posegen makes the file
        (`posegen models fetch --model u2netp_int8`); a missing file is an error here."""
        path = Path(cls.model_dir(*args, **kwargs)) / f"{cls.name()}.onnx"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `posegen models fetch --model u2netp_int8`."
            )
        return str(path)

    @classmethod
    def name(cls, *args, **kwargs) -> str:
        return "u2netp_int8"
