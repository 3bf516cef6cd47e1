"""Session `u2netp_int8`: the int8 u2netp that `posegen.imaging.quantize_u2netp` makes.

Same input and mask post-processing as `u2netp` (`posegen.imaging.u2netp_session`), so it
imports no rembg either; `segmentation.usable_models` registers it with rembg.
"""

from __future__ import annotations

from typing import Any

from posegen.imaging.u2netp_session import U2netpSession


class U2netpInt8Session(U2netpSession):
    """u2netp's session (same input, same mask post-processing) on the int8 file."""

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        return "u2netp_int8"
