"""Flow `nightly-exports`: exports what changed since the last successful run, in chosen formats."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import update

from posegen.db.models import Pose
from posegen.db.session import session_scope
from posegen.domain.export_records import set_default_formats
from tests.exports.conftest import (
    ExportFixture,
    load_pose,
    small_subject_png,
    store_exact_mask,
)

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_nightly_exports_only_what_changed_since_the_last_success(
    generation_of: Callable[..., ExportFixture],
) -> None:
    from flows.nightly_exports import nightly_exports

    chosen = generation_of([small_subject_png()])
    silent = generation_of([small_subject_png()])  # its owner chose no nightly formats
    for fixture in (chosen, silent):
        store_exact_mask(fixture.pose_ids[0])
    with session_scope() as session:
        set_default_formats(session, chosen.user_id, ["custom:120x120", "original"])

    first = nightly_exports(return_state=True)
    assert first.is_completed(), first.message
    assert first.result()["generations"] >= 1
    assert sorted(load_pose(chosen.pose_ids[0]).export_formats) == ["custom:120x120", "original"]
    assert load_pose(silent.pose_ids[0]).export_formats == {}

    second = nightly_exports(return_state=True)
    assert second.is_completed() and second.result()["generations"] == 0

    with session_scope() as session:  # the pose changes (a background change would do this)
        session.execute(
            update(Pose).where(Pose.id == chosen.pose_ids[0]).values(background_prompt="changed")
        )
    third = nightly_exports(return_state=True)
    assert third.is_completed() and third.result()["generations"] == 1
