"""Segmentation with the real u2netp model on a photo of a person (scikit-image's astronaut)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from posegen.config import reset_settings
from posegen.errors import ServiceUnavailable
from posegen.imaging import segmentation
from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.segmentation import cutout, get_session, segment

# Boxes (left, top, right, bottom) in the 512x512 astronaut photo.
FACE = (180, 60, 270, 160)
TORSO = (120, 300, 330, 450)
WALL_BETWEEN_FACE_AND_ROCKET = (300, 20, 360, 120)
TOP_LEFT_FLAG = (0, 0, 50, 50)
TOP_RIGHT_WALL = (460, 0, 512, 40)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    fetch_model()
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def astronaut_mask(astronaut: Image.Image) -> Image.Image:
    return segment(astronaut)


def _mean(mask: Image.Image, box: tuple[int, int, int, int]) -> float:
    return float(np.asarray(mask.crop(box)).mean())


def test_mask_is_grey_and_the_size_of_the_image(
    astronaut: Image.Image, astronaut_mask: Image.Image
) -> None:
    assert (astronaut_mask.mode, astronaut_mask.size) == ("L", astronaut.size)


def test_mask_separates_the_person_from_the_background(astronaut_mask: Image.Image) -> None:
    for subject in (FACE, TORSO):
        assert _mean(astronaut_mask, subject) > 200, subject
    for background in (WALL_BETWEEN_FACE_AND_ROCKET, TOP_LEFT_FLAG, TOP_RIGHT_WALL):
        assert _mean(astronaut_mask, background) < 30, background
    foreground = float((np.asarray(astronaut_mask) > 127).mean())
    assert 0.35 < foreground < 0.75


def test_session_is_created_once_per_model(astronaut_mask: Image.Image) -> None:
    session = get_session()

    assert get_session() is session
    assert get_session("u2netp") is session


def test_cutout_alpha_is_the_mask(astronaut: Image.Image, astronaut_mask: Image.Image) -> None:
    subject = cutout(astronaut, astronaut_mask)

    assert subject.mode == "RGBA"
    assert np.array_equal(np.asarray(subject.getchannel("A")), np.asarray(astronaut_mask))
    assert np.array_equal(np.asarray(subject.convert("RGB")), np.asarray(astronaut))


def test_cutout_refuses_a_mask_of_another_size(astronaut: Image.Image) -> None:
    with pytest.raises(ValueError, match="mask size"):
        cutout(astronaut, Image.new("L", (10, 10)))


def test_transparent_pixels_stay_background(astronaut: Image.Image) -> None:
    # Hide the right half (most of the person's body and the helmet): whatever the model sees
    # there, it must not come back as subject.
    with_alpha = astronaut.convert("RGBA")
    alpha = Image.new("L", astronaut.size, 255)
    alpha.paste(0, (256, 0, 512, 512))
    with_alpha.putalpha(alpha)

    mask = segment(with_alpha)

    assert np.asarray(mask)[:, 256:].max() == 0
    assert _mean(mask, (180, 60, 250, 160)) > 200


@pytest.mark.parametrize("model", ["u2netp", "u2netp_int8"])
def test_missing_model_says_how_to_fetch_it(no_sessions_and_no_model: None, model: str) -> None:
    with pytest.raises(
        ServiceUnavailable, match=f"run `posegen models fetch` with `--model {model}`"
    ):
        get_session(model)


def test_unknown_model_is_refused_with_the_choices(no_sessions_and_no_model: None) -> None:
    with pytest.raises(ServiceUnavailable, match=r"choose one of: .*u2netp"):
        get_session("atlascloud")


def test_onnx_threads_setting_caps_the_inference_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm pool of N processes sets POSEGEN_ONNX_THREADS so they share the cores out."""
    monkeypatch.setenv("POSEGEN_ONNX_THREADS", "1")
    reset_settings()
    assert segmentation._session_options().intra_op_num_threads == 1
    monkeypatch.delenv("POSEGEN_ONNX_THREADS")
    reset_settings()
    assert segmentation._session_options().intra_op_num_threads == segmentation._usable_cores()
