"""Every rule of the background-change body, with the message the user sees."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from posegen.domain.background import BackgroundChange, check_upload_owner
from posegen.errors import ValidationFailed


def problem(body: dict) -> str:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as raised:
        BackgroundChange.model_validate(body)
    return raised.value.errors()[0]["msg"]


def test_camel_case_body_is_accepted_and_normalised() -> None:
    change = BackgroundChange.model_validate(
        {"backgroundMode": "solid_color", "backgroundColor": "#ff8800"}
    )
    assert change.background_color == "#FF8800"
    assert change.model_dump(by_alias=True, exclude_none=True) == {
        "backgroundMode": "solid_color",
        "backgroundColor": "#FF8800",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Field required"),
        ({"backgroundMode": "sepia"}, "Input should be 'ai_generate', 'solid_color' or 'upload'"),
        (
            {"backgroundMode": "ai_generate"},
            "backgroundPrompt is required when backgroundMode is ai_generate",
        ),
        (
            {"backgroundMode": "solid_color"},
            "backgroundColor is required when backgroundMode is solid_color",
        ),
        (
            {"backgroundMode": "upload"},
            "backgroundImageUrl is required when backgroundMode is upload",
        ),
        (
            {"backgroundMode": "ai_generate", "backgroundPrompt": "   "},
            "backgroundPrompt must not be empty",
        ),
        (
            {"backgroundMode": "ai_generate", "backgroundPrompt": "x" * 301},
            "at most 300 characters",
        ),
        (
            {"backgroundMode": "ai_generate", "backgroundPrompt": "a NUDE beach"},
            "forbidden keywords: nude",
        ),
        ({"backgroundMode": "solid_color", "backgroundColor": "red"}, "hex colour like #FF8800"),
        ({"backgroundMode": "solid_color", "backgroundColor": "#FFF"}, "hex colour like #FF8800"),
        (
            {"backgroundMode": "solid_color", "backgroundColor": "#GGGGGG"},
            "hex colour like #FF8800",
        ),
        (
            {"backgroundMode": "upload", "backgroundImageUrl": "http://example.com/a.png"},
            "https URL",
        ),
        ({"backgroundMode": "upload", "backgroundImageUrl": "uploads/../poses/x.png"}, "https URL"),
        ({"backgroundMode": "upload", "backgroundImageUrl": "/etc/passwd"}, "https URL"),
        ({"backgroundMode": "upload", "backgroundImageUrl": "poses/a/b.png"}, "uploads/ key"),
        (
            {"backgroundMode": "solid_color", "backgroundColor": "#FFFFFF", "extra": 1},
            "Extra inputs",
        ),
    ],
)
def test_invalid_bodies_are_refused_with_a_clear_message(body: dict, message: str) -> None:  # type: ignore[type-arg]
    assert message in problem(body)


def test_prompt_of_exactly_300_characters_is_fine() -> None:
    change = BackgroundChange(background_mode="ai_generate", background_prompt="y" * 300)
    assert change.background_prompt == "y" * 300


def test_forbidden_keyword_inside_another_word_is_fine() -> None:
    # "gun" inside "burgundy" is not a weapon.
    change = BackgroundChange(background_mode="ai_generate", background_prompt="burgundy wall")
    assert change.background_prompt == "burgundy wall"


def test_upload_key_must_be_the_callers_own() -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    change = BackgroundChange(
        background_mode="upload", background_image_url=f"uploads/{owner}/a.png"
    )
    check_upload_owner(change, owner)
    with pytest.raises(ValidationFailed, match="not one of your uploads"):
        check_upload_owner(change, other)
