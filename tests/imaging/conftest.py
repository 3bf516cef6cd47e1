"""Fixtures shared by the imaging tests: model folders and session caches of a test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from posegen.config import reset_settings
from posegen.imaging import segmentation


@pytest.fixture
def empty_rembg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A REMBG_HOME of this test's own, so breaking files in it harms nothing shared."""
    home = tmp_path / "rembg-home"
    monkeypatch.setenv("REMBG_HOME", str(home))
    reset_settings()
    yield home
    monkeypatch.undo()
    reset_settings()


@pytest.fixture
def no_sessions_and_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that has loaded no session yet, on a machine where the model was not fetched."""
    monkeypatch.setattr(segmentation, "_sessions", {})
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "empty-rembg-home"))
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()
