"""Paid exports (`fill: ai_expand`) end to end: the `multi-format-export` flow on the session's
Prefect server, the fake BFL server over HTTP, the real database and storage (local and S3).

Success: the files exist where every export's do, at the format's size, without seams; the
ledger holds one charge per FLUX-filled file and nothing else. Failure (FLUX failing mid-run or
moderating): every charge refunded exactly once, no file left on storage (staged or published),
the pose's exportFormats and files as they were, no ZIP. The API: 400 on a bad `fill`, 403 with
nothing charged when credits are short, 503 with nothing charged when FLUX is not configured.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from posegen.config import reset_settings
from posegen.db.models import CreditTransaction, Pose
from posegen.db.session import session_scope
from posegen.domain.credits import balance, ledger_sum
from posegen.domain.export_requests import ExportRequest
from posegen.domain.exports import resolve_format, zip_key
from posegen.imaging.ai_fill import fill_framing
from posegen.storage import get_storage
from tests.api.conftest import BASE, Account
from tests.conftest import make_user
from tests.exports.conftest import (
    ExportFixture,
    load_pose,
    red_box,
    small_subject_png,
    store_exact_mask,
    synthetic_pose,
)
from tests.exports.seams import new_seams

pytestmark = pytest.mark.usefixtures("prefect_api")

# The pose is 120x160 (3:4): a story (9:16) and a square are outpainted, a 3:4 custom size is a
# plain resize (free).
FORMATS = ["instagram_story", "shopee_product", "custom:240x320"]
AI_FORMATS = {"instagram_story", "shopee_product"}
COST = 10


@pytest.fixture
def flux_env(fake_bfl, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    reset_settings()
    yield fake_bfl
    reset_settings()


@pytest.fixture
def paying(generation_of, app_env: dict[str, str]) -> ExportFixture:  # type: ignore[no-untyped-def]
    """A user with 100 credits and one small unchanged pose with its exact mask."""
    owner = make_user(app_env["POSEGEN_DATABASE_URL"], credits=100)
    fixture = generation_of([small_subject_png()], user_id=owner)
    store_exact_mask(fixture.pose_ids[0])
    return fixture


def run_paid(fixture: ExportFixture, formats: list[str] = FORMATS) -> Any:
    from flows.export import multi_format_export

    request = ExportRequest(formats=formats, fill="ai_expand")
    return multi_format_export(fixture.generation_id, request, return_state=True)


def ledger(fixture: ExportFixture) -> list[CreditTransaction]:
    with session_scope(fixture.db_url) as session:
        rows = session.scalars(
            select(CreditTransaction)
            .where(CreditTransaction.user_id == fixture.user_id)
            .order_by(CreditTransaction.created_at)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def balances(fixture: ExportFixture) -> tuple[int, int]:
    with session_scope(fixture.db_url) as session:
        return balance(session, fixture.user_id), ledger_sum(session, fixture.user_id)


def export_files(fixture: ExportFixture) -> list[str]:
    return get_storage().list(f"exports/{fixture.generation_id}/")


def assert_refunded_once(fixture: ExportFixture, files: int) -> None:
    rows = ledger(fixture)
    charges = [row for row in rows if row.idempotency_key.startswith("export-fill:")]
    refunds = [row for row in rows if row.refund_of is not None]
    assert len(charges) == files and all(row.amount == -COST for row in charges)
    assert sorted(row.refund_of for row in refunds) == sorted(row.id for row in charges)
    assert all(row.amount == COST for row in refunds)
    assert balances(fixture) == (100, 100)


def test_ai_expand_export_delivers_charged_files(any_storage: str, flux_env, paying) -> None:  # type: ignore[no-untyped-def]
    state = run_paid(paying)
    assert state.is_completed(), state.message
    source = synthetic_pose((120, 160), (50, 30, 80, 140))  # what small_subject_png() draws
    pose_id = paying.pose_ids[0]
    pose = load_pose(pose_id)
    assert sorted(pose.export_formats) == sorted(FORMATS)
    storage = get_storage()
    for name in FORMATS:
        fmt = resolve_format(name)
        key = pose.export_formats[name]
        assert key == f"exports/{paying.generation_id}/{pose_id}/{fmt.slug}.jpg"
        image = Image.open(io.BytesIO(storage.read_bytes(key)))
        assert image.size == (fmt.width, fmt.height)
        framing = fill_framing(
            fmt, source.image.size, source.subject, frozenset(), expanding=name in AI_FORMATS
        )
        assert not new_seams(image.convert("RGB"), source.image, framing, source.mask), name
        found = red_box(image)
        assert found is not None, name
        for side in ("left", "top", "right", "bottom"):  # the subject where the plan put it
            assert abs(getattr(found, side) - getattr(framing.subject, side)) <= 3, (name, found)
    # Nothing left in staging; the ZIP holds the three files.
    assert not [key for key in export_files(paying) if "/staging/" in key]
    assert storage.exists(zip_key(paying.generation_id))
    # One FLUX expand per AI format, one charge per file FLUX filled, nothing for the resize.
    assert len(flux_env.requests_to("/v1/flux-pro-1.0-expand", method="POST")) == 2
    charges = [row for row in ledger(paying) if row.idempotency_key.startswith("export-fill:")]
    assert sorted(row.idempotency_key.rsplit(":", 1)[1] for row in charges) == sorted(AI_FORMATS)
    assert all(row.amount == -COST and row.flow_run_id is not None for row in charges)
    assert balances(paying) == (100 - 2 * COST, 100 - 2 * COST)


@pytest.mark.parametrize("failure", ["server_error", "content_moderated"])
def test_flux_failing_mid_run_refunds_once_and_keeps_nothing(  # type: ignore[no-untyped-def]
    any_storage: str, flux_env, paying, failure: str
) -> None:
    from posegen.localexport import regenerate_export

    pose_id = paying.pose_ids[0]
    storage = get_storage()
    # The pose already has a (free) story export: a failed paid run must leave it as it is.
    with session_scope() as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        earlier = regenerate_export(session, storage, pose, resolve_format("instagram_story"))
    before = storage.read_bytes(earlier.key)
    recorded = dict(load_pose(pose_id).export_formats)
    files_before = export_files(paying)

    flux_env.switch_after(1, failure)  # the first expand succeeds, the next one fails
    state = run_paid(paying)
    assert state.is_failed()
    assert "refunded" in state.message or "refunded" in str(state.result(raise_on_failure=False))

    assert_refunded_once(paying, files=2)
    assert dict(load_pose(pose_id).export_formats) == recorded
    assert storage.read_bytes(earlier.key) == before
    assert export_files(paying) == files_before  # nothing staged or published stayed
    assert not storage.exists(zip_key(paying.generation_id))

    # The failure hook (and any later try) finds every charge refunded: still exactly once.
    from flows.export import refund_failed_export

    run = _read_run(state.state_details.flow_run_id)
    refund_failed_export(None, run, state)  # type: ignore[arg-type]
    assert_refunded_once(paying, files=2)


def _read_run(run_id: uuid.UUID | None) -> Any:
    from prefect.client.orchestration import get_client

    assert run_id is not None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def test_a_lost_refund_is_found_by_the_reconciler(paying, flux_env) -> None:  # type: ignore[no-untyped-def]
    """A run that charged, staged a file and died (no hook ran) leaves charges and a staged
    file: the refund reconciler refunds each file once (a second pass gives nothing) and
    deletes what the run staged."""
    from flows.refund_reconciler import refund_reconciler
    from posegen.domain import export_charges
    from posegen.domain.exports import staging_prefix

    request = ExportRequest(formats=FORMATS, fill="ai_expand")
    request_id = uuid.uuid4()
    with session_scope() as session:
        files = export_charges.paid_files(session, request_id, paying.pose_ids, request)
        export_charges.charge_files(session, paying.user_id, files)
    assert balances(paying) == (80, 80)
    storage = get_storage()
    staged = f"{staging_prefix(paying.generation_id, request_id)}{paying.pose_ids[0]}_story.png"
    storage.write_bytes(staged, small_subject_png(), content_type="image/png")
    other_run = f"{staging_prefix(paying.generation_id, uuid.uuid4())}{paying.pose_ids[0]}.png"
    storage.write_bytes(other_run, small_subject_png(), content_type="image/png")

    refunded = asyncio.run(refund_reconciler(grace_minutes=0, running_timeout_minutes=30))
    mine = [row for row in refunded if row["userId"] == str(paying.user_id)]
    assert len(mine) == 2 and all(row["credits"] == COST for row in mine)
    assert_refunded_once(paying, files=2)
    assert not storage.list(staging_prefix(paying.generation_id, request_id))
    assert storage.exists(other_run)  # another run's staging is that run's business
    again = asyncio.run(refund_reconciler(grace_minutes=0, running_timeout_minutes=30))
    assert not [row for row in again if row["userId"] == str(paying.user_id)]


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
def owned(account: Account, generation_of) -> ExportFixture:  # type: ignore[no-untyped-def]
    fixture = generation_of([small_subject_png()], user_id=account.id)
    store_exact_mask(fixture.pose_ids[0])
    return fixture


def _account_balance(account: Account) -> int:
    with session_scope() as session:
        return balance(session, account.id)


def test_api_refuses_bad_fill_short_credits_and_missing_flux(  # type: ignore[no-untyped-def]
    client: TestClient, account: Account, owned: ExportFixture, fake_bfl, monkeypatch
) -> None:
    url = f"{BASE}/generations/{owned.generation_id}/exports"
    opening = _account_balance(account)

    bad = client.post(url, json={"formats": FORMATS, "fill": "magic"}, headers=account.headers)
    assert bad.status_code == 400 and "fill" in bad.text
    assert bad.json()["error"] == "ValidationError"

    # No FLUX key: 503 before anything is charged.
    off = client.post(url, json={"formats": FORMATS, "fill": "ai_expand"}, headers=account.headers)
    assert off.status_code == 503, off.text
    assert off.json()["error"] == "ServiceUnavailable"

    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url)
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("POSEGEN_AI_EXPAND_COST", str(opening))  # two files cost twice the balance
    reset_settings()
    try:
        short = client.post(
            url, json={"formats": FORMATS, "fill": "ai_expand"}, headers=account.headers
        )
        assert short.status_code == 403, short.text
        body = short.json()
        assert body["error"] == "InsufficientCredits"
        assert (body["required"], body["balance"]) == (2 * opening, opening)
        catalog = client.get(f"{BASE}/export-formats", headers=account.headers).json()
        assert catalog["aiFill"] == {"fill": "ai_expand", "costPerFile": opening, "available": True}
    finally:
        reset_settings()
    assert _account_balance(account) == opening
    with session_scope() as session:
        rows = session.scalars(
            select(CreditTransaction).where(CreditTransaction.user_id == account.id)
        ).all()
        assert not [row for row in rows if row.idempotency_key.startswith("export-fill:")]
    assert load_pose(owned.pose_ids[0]).export_formats == {}
    assert not get_storage().list(f"exports/{owned.generation_id}/")


def test_api_charges_per_file_once_and_submits_the_paid_run(  # type: ignore[no-untyped-def]
    client: TestClient, account: Account, owned: ExportFixture, flux_env
) -> None:
    from prefect.client.orchestration import get_client

    from flows.export import multi_format_export
    from posegen.config import get_settings

    name = get_settings().deployment_multi_format_export.split("/", 1)[1]
    multi_format_export.to_deployment(name=name).apply()
    url = f"{BASE}/generations/{owned.generation_id}/exports"
    opening = _account_balance(account)
    body = {"formats": FORMATS, "fill": "ai_expand"}
    headers = {**account.headers, "Idempotency-Key": f"paid-{uuid.uuid4()}"}
    response = client.post(url, json=body, headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["fill"] == "ai_expand" and accepted["aiFiles"] == 2
    assert accepted["creditCharged"] == 2 * COST
    assert accepted["creditBalance"] == opening - 2 * COST
    again = client.post(url, json=body, headers=headers)  # a retried request pays nothing more
    assert again.json()["flowRunId"] == accepted["flowRunId"]
    assert _account_balance(account) == opening - 2 * COST
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(uuid.UUID(accepted["flowRunId"]))
    assert run.parameters["request"]["fill"] == "ai_expand"
    assert uuid.UUID(run.parameters["request_id"])
