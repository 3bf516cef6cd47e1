"""`posegen export`: renders here, shows progress, and prints the ZIP key alone on the last line."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

from typer.testing import CliRunner

from posegen.cli import app
from posegen.domain.exports import zip_key
from posegen.storage import get_storage
from tests.exports.conftest import ExportFixture, small_subject_png, store_exact_mask


def test_cli_export_prints_the_zip_key_last(generation_of: Callable[..., ExportFixture]) -> None:
    fixture = generation_of([small_subject_png(), small_subject_png()])
    for pose_id in fixture.pose_ids:
        store_exact_mask(pose_id)
    result = CliRunner().invoke(
        app, ["export", str(fixture.generation_id), "--formats", "tiktok,custom:64x64"]
    )
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last == zip_key(fixture.generation_id)
    names = zipfile.ZipFile(io.BytesIO(get_storage().read_bytes(last))).namelist()
    assert len(names) == 4


def test_cli_export_refuses_unknown_formats(generation_of: Callable[..., ExportFixture]) -> None:
    fixture = generation_of([small_subject_png()])
    result = CliRunner().invoke(app, ["export", str(fixture.generation_id), "--formats", "vine"])
    assert result.exit_code == 1
