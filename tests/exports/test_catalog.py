"""The export format catalog: the seven formats, `custom:WxH`, refusals that say what is valid."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import (
    FORMATS,
    Category,
    FileType,
    SafeArea,
    parse_format_list,
    resolve_format,
    resolve_formats,
)
from posegen.errors import ValidationFailed


def test_catalog_has_the_seven_formats_of_the_design() -> None:
    sizes = {name: (fmt.width, fmt.height, fmt.category) for name, fmt in FORMATS.items()}
    assert sizes == {
        "instagram_story": (1080, 1920, Category.SOCIAL),
        "instagram_feed": (1080, 1350, Category.SOCIAL),
        "tiktok": (1080, 1920, Category.SOCIAL),
        "shopee_product": (1024, 1024, Category.ECOMMERCE),
        "tokopedia_product": (1200, 1200, Category.ECOMMERCE),
        "a4_print": (2480, 3508, Category.PRINT),
        "original": (None, None, Category.PRINT),
    }
    assert FORMATS["instagram_story"].safe_area == SafeArea(top=250, bottom=340)
    assert FORMATS["tiktok"].safe_area == SafeArea(top=150, right=150, bottom=440)
    assert FORMATS["shopee_product"].max_bytes == 2_000_000
    assert FORMATS["tokopedia_product"].max_bytes == 5_000_000
    assert FORMATS["a4_print"].dpi == 300
    assert FORMATS["original"].file_type == FileType.PNG
    assert all(
        FORMATS[n].min_subject_coverage == 0.6 for n in ("shopee_product", "tokopedia_product")
    )


def test_custom_sizes_within_bounds() -> None:
    fmt = resolve_format("custom:1200x628")
    assert (fmt.width, fmt.height, fmt.category, fmt.slug) == (
        1200,
        628,
        Category.CUSTOM,
        "custom-1200x628",
    )
    assert resolve_format("custom:64x8000").height == 8000
    assert resolve_format("custom:300X200").name == "custom:300x200"


@pytest.mark.parametrize("name", ["custom:63x100", "custom:100x8001", "custom:0x0", "custom:12"])
def test_custom_sizes_out_of_bounds_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed):
        resolve_format(name)


def test_unknown_names_are_all_reported_with_the_valid_ones() -> None:
    with pytest.raises(ValidationFailed) as caught:
        resolve_formats(["instagram_feed", "facebook", "pinterest"])
    message = caught.value.message
    assert "'facebook'" in message and "'pinterest'" in message
    assert "instagram_story" in message and "custom:WxH" in message


def test_duplicates_collapse_in_order() -> None:
    assert [f.name for f in parse_format_list("tiktok, original,tiktok")] == ["tiktok", "original"]


def test_request_schema_validates_once_for_api_and_flow() -> None:
    request = ExportRequest.model_validate({"formats": ["tiktok", "custom:200x300"]})
    assert request.formats == ["tiktok", "custom:200x300"] and request.pose_ids is None
    with pytest.raises(ValidationError, match="Unknown export format"):
        ExportRequest.model_validate({"formats": ["nope"]})
    with pytest.raises(ValidationError):
        ExportRequest.model_validate({"formats": []})
