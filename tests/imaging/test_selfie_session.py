"""The `selfie` rembg session on the project's photos, against u2netp, through posegen and rembg."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from posegen.errors import ServiceUnavailable
from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.segmentation import get_session, segment, usable_models

if TYPE_CHECKING:
    # Importing it imports rembg (seconds): only the tests that use it pay for that.
    from posegen.imaging.selfie_session import SelfieSession

SAMPLES = Path(__file__).resolve().parents[2] / "posegen" / "samples"
# Boxes (left, top, right, bottom) around what a person holds or stands behind.
CAMERAMAN_TRIPOD_LEGS = (230, 300, 410, 512)
CAMERAMAN_CAMERA_AND_TRIPOD = (228, 135, 415, 512)
PORTRAIT_HELMET = (0, 335, 200, 512)


@pytest.fixture(scope="module")
def selfie() -> SelfieSession:
    fetch_model("u2netp")
    fetch_model("selfie")
    return get_session("selfie")


def _photo(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("RGB")


def _person(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask) >= 128


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _outside(box: tuple[int, int, int, int], mask: np.ndarray) -> np.ndarray:
    left, top, right, bottom = box
    kept = mask.copy()
    kept[top:bottom, left:right] = False
    return kept


def _share(box: tuple[int, int, int, int], mask: np.ndarray) -> float:
    left, top, right, bottom = box
    return float(mask[top:bottom, left:right].mean())


def test_selfie_is_a_usable_model_with_its_own_session(selfie: SelfieSession) -> None:
    from posegen.imaging.selfie_session import SelfieSession

    assert "selfie" in usable_models()
    assert isinstance(selfie, SelfieSession)
    assert get_session("selfie") is selfie
    assert get_session("u2netp") is not selfie


def test_selfie_agrees_with_u2netp_on_a_person_alone(selfie: SelfieSession) -> None:
    photo = _photo("astronaut.jpg")

    score = _iou(_person(segment(photo, model="u2netp")), _person(segment(photo, model="selfie")))

    print(f"astronaut.jpg: IoU selfie vs u2netp {score:.4f}")
    assert score >= 0.95


@pytest.mark.parametrize(
    ("name", "held"),
    [("cameraman.jpg", CAMERAMAN_CAMERA_AND_TRIPOD), ("astronaut-portrait.jpg", PORTRAIT_HELMET)],
)
def test_selfie_and_u2netp_differ_only_around_what_the_person_holds(
    selfie: SelfieSession, name: str, held: tuple[int, int, int, int]
) -> None:
    photo = _photo(name)
    u2netp, person = (
        _person(segment(photo, model="u2netp")),
        _person(segment(photo, model="selfie")),
    )

    whole, elsewhere = _iou(u2netp, person), _iou(_outside(held, u2netp), _outside(held, person))

    print(f"{name}: IoU selfie vs u2netp {whole:.4f}, outside the held object {elsewhere:.4f}")
    assert elsewhere >= 0.98
    assert _share(held, u2netp) - _share(held, person) >= 0.05


def test_selfie_leaves_out_the_tripod_u2netp_keeps(selfie: SelfieSession) -> None:
    photo = _photo("cameraman.jpg")

    u2netp, person = (
        _person(segment(photo, model="u2netp")),
        _person(segment(photo, model="selfie")),
    )

    assert _share(CAMERAMAN_TRIPOD_LEGS, u2netp) > 0.15
    assert _share(CAMERAMAN_TRIPOD_LEGS, person) < 0.05


def test_a_landscape_without_people_is_empty_for_selfie_not_for_u2netp(
    selfie: SelfieSession,
) -> None:
    # A square part of the dusk landscape: hills and sky, no person, no sun.
    landscape = _photo("backdrop.jpg").crop((0, 0, 512, 512))

    assert _person(segment(landscape, model="u2netp")).mean() > 0.05
    assert np.asarray(segment(landscape, model="selfie")).max() < 128


def test_wide_images_go_to_the_landscape_model(selfie: SelfieSession) -> None:
    assert selfie.input_size_for((512, 512)) == (256, 256)
    assert selfie.input_size_for((1024, 1536)) == (256, 256)
    assert selfie.input_size_for((600, 512)) == (256, 256)
    assert selfie.input_size_for((1536, 1024)) == (256, 144)
    assert selfie.input_size_for((1920, 1080)) == (256, 144)


def test_predict_runs_the_landscape_model_on_a_wide_photo(
    selfie: SelfieSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, tuple[int, ...]]] = []
    for attribute in ("inner_session", "landscape_session"):
        recorded = _Recording(getattr(selfie, attribute), attribute, calls)
        monkeypatch.setattr(selfie, attribute, recorded)
    two_people = Image.new("RGB", (1024, 512))
    two_people.paste(_photo("astronaut.jpg"), (0, 0))
    two_people.paste(_photo("cameraman.jpg"), (512, 0))

    mask = segment(two_people, model="selfie")
    segment(_photo("astronaut-portrait.jpg"), model="selfie")

    assert calls == [("landscape_session", (1, 3, 144, 256)), ("inner_session", (1, 3, 256, 256))]
    assert mask.size == two_people.size
    # The astronaut, on the left half, is found by the landscape model too.
    assert _person(mask)[60:160, 180:270].mean() > 0.9


def test_rembg_remove_with_the_selfie_session_cuts_out_the_person(selfie: SelfieSession) -> None:
    from rembg import remove

    photo = _photo("astronaut-portrait.jpg")

    cut = remove(photo, session=selfie)
    only_mask = remove(photo, session=selfie, only_mask=True)

    assert isinstance(cut, Image.Image) and cut.mode == "RGBA" and cut.size == photo.size
    alpha = _person(cut.getchannel("A"))
    assert alpha[60:150, 200:280].mean() > 0.95  # face (the portrait is mirrored)
    assert alpha[0:100, 330:384].mean() < 0.05  # wall beside the hair
    # posegen's fast path (shrink first, upscale the mask once) gives rembg's own mask.
    assert _iou(_person(only_mask), _person(segment(photo, model="selfie"))) >= 0.99


def test_mask_is_the_size_of_any_image(selfie: SelfieSession) -> None:
    for size in ((97, 301), (300, 40), (256, 256), (2000, 1000)):
        image = _photo("astronaut.jpg").resize(size)

        (mask,) = selfie.predict(image)

        assert (mask.mode, mask.size) == ("L", size)


def test_missing_selfie_model_says_how_to_fetch_it(no_sessions_and_no_model: None) -> None:
    with pytest.raises(ServiceUnavailable, match=r"`posegen models fetch` with `--model selfie`"):
        get_session("selfie")


class _Recording:
    """An onnxruntime session that records which one ran, on what input shape."""

    def __init__(
        self, session: ort.InferenceSession, label: str, calls: list[tuple[str, tuple[int, ...]]]
    ) -> None:
        self._session, self._label, self._calls = session, label, calls

    def get_inputs(self):
        return self._session.get_inputs()

    def run(self, outputs, feeds):
        self._calls.append((self._label, next(iter(feeds.values())).shape))
        return self._session.run(outputs, feeds)
