"""The selfie models converted to ONNX compute what the original TFLite models compute.

The reference is the original .tflite run by LiteRT (`ai-edge-litert`, whose default delegate
implements MediaPipe's custom op), on the same inputs as onnxruntime: the project's photos,
the same photos with noise, and pure noise.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from posegen.errors import PermanentError
from posegen.imaging.convert_selfie import (
    INPUT_NAME,
    OUTPUT_NAME,
    UnsupportedModel,
    convert,
    input_size,
)
from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.model_files import SELFIE_SOURCES, has_model, model_path

SAMPLES = Path(__file__).resolve().parents[2] / "posegen" / "samples"
PEOPLE_PHOTOS = ("astronaut.jpg", "astronaut-portrait.jpg", "cameraman.jpg")
VARIANTS = {"selfie": (256, 256), "selfie_landscape": (256, 144)}


@pytest.fixture(scope="module")
def sources() -> dict[str, bytes]:
    """The verified .tflite files `posegen models fetch --model selfie` keeps beside the ONNX."""
    folder = fetch_model("selfie").parent
    return {stem: (folder / f"{stem}.tflite").read_bytes() for stem in SELFIE_SOURCES}


def _inputs(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """NHWC float32 images in [0, 1] at the model's input size."""
    rng = np.random.default_rng(8)
    inputs = {}
    for name in PEOPLE_PHOTOS:
        photo = Image.open(SAMPLES / name).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        pixels = np.asarray(photo, dtype=np.float32) / 255.0
        inputs[name] = pixels
        noisy = pixels + rng.normal(0.0, 0.08, pixels.shape).astype(np.float32)
        inputs[f"{name} + noise"] = np.clip(noisy, 0.0, 1.0)
    inputs["uniform noise"] = rng.random((size[1], size[0], 3), dtype=np.float32)
    return inputs


def _tflite_probability(source: bytes, pixels: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=source)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    interpreter.set_tensor(input_detail["index"], pixels[np.newaxis])
    interpreter.invoke()
    return interpreter.get_tensor(output_detail["index"])[0, :, :, 0]


@pytest.mark.parametrize("stem", list(VARIANTS))
def test_onnx_model_matches_tflite_on_photos_and_noise(
    stem: str, sources: dict[str, bytes]
) -> None:
    model = convert(sources[stem])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    differences = {}
    people_seen = 0
    for name, pixels in _inputs(VARIANTS[stem]).items():
        expected = _tflite_probability(sources[stem], pixels)
        (actual,) = session.run(None, {INPUT_NAME: pixels.transpose(2, 0, 1)[np.newaxis]})
        actual = actual[0, 0]

        differences[name] = float(np.abs(actual - expected).max())
        assert np.array_equal(actual > 0.5, expected > 0.5), name
        people_seen += bool((expected > 0.5).mean() > 0.2)

    print(f"{stem}: max |ONNX - TFLite| per input: {differences}")
    assert max(differences.values()) <= 1e-3, differences
    # The comparison means something only if the photos do show people to the model.
    assert people_seen >= len(PEOPLE_PHOTOS)


@pytest.mark.parametrize("stem", list(VARIANTS))
def test_converted_model_is_a_valid_onnx_graph_with_nchw_image_input(
    stem: str, sources: dict[str, bytes]
) -> None:
    model = convert(sources[stem], source="test")

    onnx.checker.check_model(model, full_check=True)
    width, height = VARIANTS[stem]
    assert input_size(model) == (width, height)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    dims = [d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert dims == [1, 1, height, width]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_sha256"] == SELFIE_SOURCES[stem][1]


def test_fetched_files_are_the_verified_sources_and_their_conversion(
    sources: dict[str, bytes],
) -> None:
    folder = model_path("selfie").parent
    for stem, (_, sha256) in SELFIE_SOURCES.items():
        assert hashlib.sha256(sources[stem]).hexdigest() == sha256
        fetched = onnx.load(str(folder / f"{stem}.onnx"))
        assert fetched.graph == convert(sources[stem]).graph, stem


def test_a_file_that_is_not_tflite_is_refused() -> None:
    with pytest.raises(UnsupportedModel):
        convert(b"\x00" * 64)


def test_mediapipe_wheel_with_other_model_bytes_is_refused(
    empty_rembg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local index holding a wheel of the pinned name and platform, with tampered models.
    index = tmp_path / "index"
    index.mkdir()
    name = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    dist_info = "mediapipe-0.10.14.dist-info"
    with zipfile.ZipFile(index / name, "w") as wheel:
        for member, _ in SELFIE_SOURCES.values():
            wheel.writestr(member, b"tampered model")
        wheel.writestr(
            f"{dist_info}/METADATA", "Metadata-Version: 2.1\nName: mediapipe\nVersion: 0.10.14\n"
        )
        wheel.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: posegen-tests\nRoot-Is-Purelib: false\n"
            "Tag: cp311-cp311-manylinux_2_17_x86_64\n",
        )
        wheel.writestr(f"{dist_info}/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))

    with pytest.raises(PermanentError, match="sha256"):
        fetch_model("selfie")

    assert not has_model("selfie")
    assert not model_path("selfie").parent.exists()
