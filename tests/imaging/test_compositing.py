"""Compositing: exact pixels where the mask is certain, cover fit, and the one colour syntax."""

from __future__ import annotations

import pytest
from PIL import Image

from posegen.errors import ValidationFailed
from posegen.imaging.compositing import composite, fit_cover, parse_hex_color, solid_canvas

SUBJECT_COLOUR = (10, 20, 30)
BACKGROUND_COLOUR = (200, 100, 50)


def _half_subject(size: tuple[int, int] = (8, 6)) -> Image.Image:
    """Opaque subject on the left half, fully transparent on the right half."""
    subject = Image.new("RGBA", size, (*SUBJECT_COLOUR, 0))
    subject.paste((*SUBJECT_COLOUR, 255), (0, 0, size[0] // 2, size[1]))
    return subject


@pytest.mark.parametrize(
    ("value", "expected"),
    [("#1A2B3C", (26, 43, 60)), ("#ffffff", (255, 255, 255)), ("#000000", (0, 0, 0))],
)
def test_hex_colours_are_parsed(value: str, expected: tuple[int, int, int]) -> None:
    assert parse_hex_color(value) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("red", "'red'"),
        ("#FFF", "'#FFF'"),
        ("1A2B3C", "'1A2B3C'"),
        ("#1A2B3G", "'#1A2B3G'"),
        ("#1A2B3C4D", "'#1A2B3C4D'"),
        (" #1A2B3C", "' #1A2B3C'"),
        ("#1A2B3C\n", "'#1A2B3C\\n'"),
        ("", "''"),
        ("#" + "A" * 100, "'#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA..."),
    ],
)
def test_other_colour_syntaxes_are_refused(value: str, shown: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_hex_color(value)

    assert caught.value.message == (
        f"A colour must be written #RRGGBB (for example #1A2B3C), not {shown}."
    )
    assert caught.value.context == {"field": "backgroundColor"}


def test_solid_canvas_has_the_size_and_colour() -> None:
    canvas = solid_canvas((7, 3), BACKGROUND_COLOUR)

    assert (canvas.mode, canvas.size) == ("RGB", (7, 3))
    assert set(canvas.getdata()) == {BACKGROUND_COLOUR}


def test_fit_cover_crops_the_sides_of_a_wide_image() -> None:
    # Three 100 px bands: red, green, blue. Covering a square keeps only the green centre.
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 255, 0), (100, 0, 200, 100))
    wide.paste((0, 0, 255), (200, 0, 300, 100))

    fitted = fit_cover(wide, (100, 100))

    assert fitted.size == (100, 100)
    assert set(fitted.getdata()) == {(0, 255, 0)}


def test_fit_cover_scales_up_a_tall_image_and_keeps_its_centre() -> None:
    # Top half white, bottom half black; the middle of the image stays in the middle.
    tall = Image.new("RGB", (50, 100), (255, 255, 255))
    tall.paste((0, 0, 0), (0, 50, 50, 100))

    fitted = fit_cover(tall, (200, 200))

    assert fitted.size == (200, 200)
    assert fitted.getpixel((100, 10)) == (255, 255, 255)
    assert fitted.getpixel((100, 190)) == (0, 0, 0)
    assert fitted.getpixel((0, 90)) == (255, 255, 255)
    assert fitted.getpixel((199, 110)) == (0, 0, 0)


def test_fit_cover_accepts_palette_images() -> None:
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([0, 128, 0])

    fitted = fit_cover(palette, (10, 10))

    assert (fitted.mode, fitted.getpixel((5, 5))) == ("RGB", (0, 128, 0))


def test_composite_keeps_the_subject_and_replaces_the_background() -> None:
    subject = _half_subject()

    result = composite(subject, solid_canvas((64, 48), BACKGROUND_COLOUR))

    assert (result.mode, result.size) == ("RGB", subject.size)
    for x in range(8):
        for y in range(6):
            expected = SUBJECT_COLOUR if x < 4 else BACKGROUND_COLOUR
            assert result.getpixel((x, y)) == expected, (x, y)


def test_composite_blends_where_the_mask_is_uncertain() -> None:
    subject = Image.new("RGBA", (2, 2), (0, 0, 0, 128))

    result = composite(subject, solid_canvas((2, 2), (255, 255, 255)))

    assert result.getpixel((0, 0)) == (127, 127, 127)


def test_composite_fits_the_background_to_the_subject() -> None:
    # A background twice as wide: its left and right quarters are cropped away.
    background = Image.new("RGB", (32, 6), (255, 0, 0))
    background.paste(BACKGROUND_COLOUR, (8, 0, 24, 6))

    result = composite(_half_subject(), background)

    assert result.size == (8, 6)
    assert result.getpixel((7, 3)) == BACKGROUND_COLOUR


def test_composite_is_rgba_only_over_a_see_through_background() -> None:
    see_through = Image.new("RGBA", (8, 6), (*BACKGROUND_COLOUR, 0))
    opaque_rgba = Image.new("RGBA", (8, 6), (*BACKGROUND_COLOUR, 255))

    over_see_through = composite(_half_subject(), see_through)
    over_opaque = composite(_half_subject(), opaque_rgba)

    assert over_see_through.mode == "RGBA"
    assert over_see_through.getpixel((0, 0)) == (*SUBJECT_COLOUR, 255)
    assert over_see_through.getpixel((7, 0))[3] == 0
    assert over_opaque.mode == "RGB"
    assert over_opaque.getpixel((7, 0)) == BACKGROUND_COLOUR
