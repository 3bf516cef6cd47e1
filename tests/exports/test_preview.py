"""The format selector's thumbnails come from the export code: a preview is the export, smaller."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from posegen.domain.exports import FORMATS, resolve_format
from posegen.imaging.exporting import render_image
from posegen.imaging.preview import render_preview
from tests.exports import cases

FORMAT_NAMES = [*(name for name in FORMATS if name != "original"), "custom:1200x628"]


def _difference(preview: Image.Image, export: Image.Image) -> float:
    shrunk = export.convert("RGB").resize(preview.size, Image.Resampling.LANCZOS)
    a = np.asarray(preview.convert("RGB"), dtype=np.float32)
    b = np.asarray(shrunk, dtype=np.float32)
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("name", ["half-body", "wide", "side-cut"])
def test_a_preview_is_its_export_shrunk(name: str) -> None:
    case = cases.BY_NAME[name]
    pose = cases.unchanged_pose(case)
    for format_name in FORMAT_NAMES:
        fmt = resolve_format(format_name)
        preview = render_preview(pose.image, pose.mask, format_name, max_side=256)
        assert max(preview.size) == 256
        assert abs(preview.width / preview.height - fmt.width / fmt.height) < 0.02  # type: ignore[operator]
        export, _ = render_image(pose, fmt)
        assert _difference(preview, export) < 6.0, format_name


def test_a_changed_pose_previews_over_its_background() -> None:
    case = cases.BY_NAME["portrait"]
    background = cases.ai_background()
    pose = cases.changed_pose(case, background)
    for format_name in ("instagram_story", "shopee_product", "custom:1600x900"):
        preview = render_preview(
            pose.image, pose.mask, format_name, 200, original=case.photo(), background=background
        )
        export, _ = render_image(pose, resolve_format(format_name))
        assert max(preview.size) == 200
        assert _difference(preview, export) < 6.0, format_name


def test_original_previews_the_photo_and_no_mask_segments_once() -> None:
    photo = cases.sample("astronaut-portrait.jpg")
    preview = render_preview(photo, None, "original", 128)
    assert preview.size == (96, 128)
    assert render_preview(photo, None, "tiktok", 128).size == (72, 128)
