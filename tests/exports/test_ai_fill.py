"""AI fill renders (`fill: ai_expand`) over the fake BFL server's real HTTP: the expand protocol,
the outpainted frames of the hard cases, and an AI background drawn again at the format's aspect.

The rules are every export's: the frame is the format's size and filled edge to edge with no
seam the source lacks, the subject is whole, sharp and inside the safe area (cut sides on the
frame's edge), marketplace coverage and byte limits hold.
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from posegen.domain.exports import (
    FORMATS,
    AiFillKind,
    ai_fill_formats,
    ai_fill_kind,
    needs_ai_fill,
    resolve_format,
)
from posegen.flux import FluxClient, FluxModerated, FluxTransientError
from posegen.imaging.ai_fill import EXPAND_WORK_SIDE, AiFill, fill_framing
from tests.exports import cases
from tests.exports.seams import new_seams
from tests.exports.test_full_bleed import (
    FRAMED,
    assert_subject_sharp,
    assert_subject_whole,
    encoded,
)
from tests.exports.test_rendering import assert_file_matches_format, assert_subject_placed

# Every catalog format and a banner; each is a real FLUX round trip to the fake (and a PNG each
# way), so the custom sizes of test_full_bleed are left to it.
EXPAND_FORMATS = [*FRAMED, resolve_format("custom:1200x628")]


def client_for(fake) -> FluxClient:  # type: ignore[no-untyped-def]
    return FluxClient(fake.url, fake.api_key, poll_interval=0.01, timeout=20)


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- the protocol -------------------------------------------------------------------------------


def test_expand_adds_the_requested_pixels_around_the_unchanged_input(fake_bfl) -> None:  # type: ignore[no-untyped-def]
    photo = cases.astronaut().resize((64, 48))
    with client_for(fake_bfl) as flux:
        data = flux.expand(png_of(photo), top=10, bottom=6, left=3, right=5)
    grown = Image.open(io.BytesIO(data)).convert("RGB")
    assert grown.size == (64 + 3 + 5, 48 + 10 + 6)
    middle = np.asarray(grown.crop((3, 10, 3 + 64, 10 + 48)), dtype=np.int16)
    assert np.abs(middle - np.asarray(photo, dtype=np.int16)).max() == 0
    (submit,) = fake_bfl.requests_to("/v1/flux-pro-1.0-expand", method="POST")
    assert submit.headers["x-key"] == fake_bfl.api_key
    sent = submit.json
    assert (sent["top"], sent["bottom"], sent["left"], sent["right"]) == (10, 6, 3, 5)
    assert base64.b64decode(sent["image"]) == png_of(photo)
    assert sent["output_format"] == "png" and "prompt" not in sent


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"top": 10}, "image"),
        ({"image": "bm90IGFuIGltYWdl", "top": 10}, "image"),
        ({"image": "<png>", "top": 4096}, "top"),
        ({"image": "<png>", "left": -1}, "left"),
        ({"image": "<png>", "right": "wide"}, "right"),
        ({"image": "<png>", "steps": 5}, "steps"),
        ({"image": "<png>", "guidance": 500}, "guidance"),
        ({"image": "<png>", "output_format": "gif"}, "output_format"),
    ],
)
def test_the_fake_refuses_bodies_bfl_refuses(fake_bfl, body, field: str) -> None:  # type: ignore[no-untyped-def]
    if body.get("image") == "<png>":
        body = {**body, "image": base64.b64encode(png_of(Image.new("RGB", (8, 8)))).decode()}
    response = httpx.post(
        f"{fake_bfl.url}/v1/flux-pro-1.0-expand",
        json=body,
        headers={"x-key": fake_bfl.api_key},
        timeout=60,  # httpx's 5 s default is too little on a loaded two-core machine
    )
    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


def test_expand_failures_map_onto_the_error_hierarchy(fake_bfl) -> None:  # type: ignore[no-untyped-def]
    image = png_of(Image.new("RGB", (16, 16), (90, 90, 90)))
    with client_for(fake_bfl) as flux:
        fake_bfl.scenario = "server_error"
        with pytest.raises(FluxTransientError):
            flux.expand(image, top=16)
        fake_bfl.scenario = "content_moderated"
        with pytest.raises(FluxModerated):
            flux.expand(image, top=16)
        with pytest.raises(ValueError, match="top"):
            flux.expand(image, top=5000)


# -- which files FLUX fills ----------------------------------------------------------------------


def test_only_formats_a_crop_cannot_fill_are_filled_by_flux() -> None:
    story, square, original = (
        FORMATS["instagram_story"],
        FORMATS["shopee_product"],
        FORMATS["original"],
    )
    same_aspect = resolve_format("custom:300x400")
    nearly = resolve_format("custom:306x400")  # 2 % wider: a crop loses nothing that matters
    assert needs_ai_fill((600, 800), (1080, 1920)) and not needs_ai_fill((600, 800), (306, 400))
    formats = [story, square, original, same_aspect, nearly]
    unchanged = ai_fill_kind(False, None, None)
    assert unchanged == AiFillKind.EXPAND
    assert ai_fill_formats(unchanged, (600, 800), formats) == ("instagram_story", "shopee_product")
    ai = ai_fill_kind(True, "ai_generate", "a beach")
    assert ai == AiFillKind.BACKGROUND
    assert ai_fill_formats(ai, (600, 800), formats) == ("instagram_story", "shopee_product")
    # A solid colour or an uploaded image renders for any frame by itself: nothing to pay for.
    assert ai_fill_kind(True, "solid_color", None) is None
    assert ai_fill_kind(True, "upload", None) is None
    assert ai_fill_formats(None, (600, 800), formats) == ()


# -- outpainted frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda case: case.name)
def test_expanded_frames_of_the_hard_cases_are_full_bleed(case: cases.Case, fake_bfl) -> None:  # type: ignore[no-untyped-def]
    pose = cases.unchanged_pose(case)
    assert pose.subject is not None and pose.cut is not None
    fill = AiFill(lambda: client_for(fake_bfl))
    problems = []
    filled = 0
    for fmt in EXPAND_FORMATS:
        frame = fmt.frame_size(pose.image.size)
        if not needs_ai_fill(pose.image.size, frame):
            continue
        filled += 1
        image = fill.render(fmt, pose.image, subject=pose.subject, cut=pose.cut)
        framing = fill_framing(fmt, pose.image.size, pose.subject, pose.cut, expanding=True)
        file, data = encoded(image, fmt)
        assert_file_matches_format(file, data, fmt)
        found = new_seams(file, pose.image, framing, pose.mask)
        if found:
            problems.append(f"{fmt.name}: {', '.join(map(str, found[:3]))}")
        assert_subject_whole(framing, pose.subject)
        assert_subject_placed(framing.subject, framing, fmt)
        assert_subject_sharp(file, pose, framing)
        if fmt.min_subject_coverage:
            assert framing.coverage >= fmt.min_subject_coverage - 0.01, (fmt.name, framing)
    assert not problems, problems
    submits = fake_bfl.requests_to("/v1/flux-pro-1.0-expand", method="POST")
    assert len(submits) == filled > 0
    for submit in submits:
        sent = Image.open(io.BytesIO(base64.b64decode(submit.json["image"])))
        grown = (
            sent.width + submit.json["left"] + submit.json["right"],
            sent.height + submit.json["top"] + submit.json["bottom"],
        )
        assert max(grown) <= EXPAND_WORK_SIDE and min(grown) > 0


def test_a_bust_keeps_all_of_its_photo_and_gains_sky_above(fake_bfl) -> None:  # type: ignore[no-untyped-def]
    """The astronaut (cut at the bottom) in a story: the whole photo is there, standing on the
    frame's bottom edge, and FLUX was asked only for the pixels above it."""
    pose = cases.unchanged_pose(cases.BY_NAME["half-body"])
    assert pose.subject is not None and pose.cut is not None
    fmt = FORMATS["instagram_story"]
    image = AiFill(lambda: client_for(fake_bfl)).render(
        fmt, pose.image, subject=pose.subject, cut=pose.cut
    )
    framing = fill_framing(fmt, pose.image.size, pose.subject, pose.cut, expanding=True)
    placed = framing.image_box
    assert placed.bottom == pytest.approx(1920, abs=1) and placed.width == pytest.approx(
        1080, abs=1
    )
    assert framing.subject.top >= fmt.safe_area.top
    (submit,) = fake_bfl.requests_to("/v1/flux-pro-1.0-expand", method="POST")
    assert submit.json["top"] > 0
    assert submit.json["bottom"] == submit.json["left"] == submit.json["right"] == 0
    assert image.size == (1080, 1920)


def test_an_ai_background_is_drawn_again_at_the_formats_aspect(fake_bfl) -> None:  # type: ignore[no-untyped-def]
    """A changed pose whose stored FLUX background (1440x1024) cannot cover a story without
    losing most of it: FLUX is asked for the same prompt at 9:16, and the cut-out stands on it."""
    case = cases.BY_NAME["full-body"]
    pose = cases.changed_pose(case, cases.ai_background())
    assert pose.subject is not None and pose.cut is not None and pose.cutout is not None
    fmt = FORMATS["instagram_story"]
    image = AiFill(lambda: client_for(fake_bfl)).render(
        fmt,
        pose.image,
        subject=pose.subject,
        cut=pose.cut,
        cutout=pose.cutout,
        background_prompt="a sunny beach at noon",
    )
    (submit,) = fake_bfl.requests_to("/v1/flux-pro-1.1", method="POST")
    sent = submit.json
    assert "sunny beach" in sent["prompt"]
    assert sent["width"] / sent["height"] == pytest.approx(1080 / 1920, rel=0.03)
    framing = fill_framing(fmt, pose.image.size, pose.subject, pose.cut, expanding=False)
    file, data = encoded(image, fmt)
    assert_file_matches_format(file, data, fmt)
    assert_subject_placed(framing.subject, framing, fmt)
    # The corners are FLUX's gradient (red rises left to right, green top to bottom), whole.
    rgb = np.asarray(file.convert("RGB"), dtype=np.int16)
    top_left, bottom_right = rgb[5, 5], rgb[-6, -6]
    assert top_left[0] < 30 and top_left[1] < 30
    assert bottom_right[0] > 220 and bottom_right[1] > 220
