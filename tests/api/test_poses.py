"""Poses and generations: reading them, and POST /poses/{id}/background end to end against
a real Prefect server (charge, submit, 202; refusals that never touch credits; refunds)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from posegen.config import reset_settings
from tests.api.conftest import (
    BASE,
    Account,
    Generated,
    assert_pose_untouched,
    balance,
    ledger,
    png_bytes,
    pose_status,
)

SOLID = {"backgroundMode": "solid_color", "backgroundColor": "#ff8800"}


def _change(generated: Generated) -> str:
    return f"{BASE}/poses/{generated.pose_id}/background"


def _read_flow_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(uuid.UUID(flow_run_id))


# -- reading ------------------------------------------------------------------------------------


def test_owner_reads_pose_with_urls_to_its_images(
    client: TestClient, account: Account, generated: Generated
) -> None:
    response = client.get(f"{BASE}/poses/{generated.pose_id}", headers=account.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(generated.pose_id)
    assert body["generationId"] == str(generated.generation_id)
    assert body["imageUrl"] == f"{BASE}/files/{generated.image_key}"
    assert body["originalImageUrl"] == body["imageUrl"]
    assert (body["status"], body["backgroundChanged"], body["exportFormats"]) == (
        "ready",
        False,
        {},
    )
    assert {"errorMessage", "backgroundMode", "backgroundPrompt", "backgroundColor"} <= set(body)
    assert {"createdAt", "updatedAt"} <= set(body)


def test_owner_reads_generation_with_its_poses(
    client: TestClient, account: Account, generated: Generated
) -> None:
    response = client.get(f"{BASE}/generations/{generated.generation_id}", headers=account.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(generated.generation_id)
    assert [pose["id"] for pose in body["poses"]] == [str(generated.pose_id)]
    assert {"projectId", "status", "createdAt"} <= set(body)


@pytest.mark.parametrize("resource", ["poses", "generations"])
def test_someone_elses_resource_looks_exactly_like_a_missing_one(
    client: TestClient,
    new_account: Callable[..., Account],
    generated: Generated,
    resource: str,
) -> None:
    stranger = new_account()
    own_id = generated.pose_id if resource == "poses" else generated.generation_id

    theirs = client.get(f"{BASE}/{resource}/{own_id}", headers=stranger.headers)
    missing = client.get(f"{BASE}/{resource}/{uuid.uuid4()}", headers=stranger.headers)
    not_an_id = client.get(f"{BASE}/{resource}/not-a-uuid", headers=stranger.headers)

    assert theirs.status_code == missing.status_code == not_an_id.status_code == 404
    assert theirs.json() == missing.json() == not_an_id.json()


# -- refusals that cost nothing -----------------------------------------------------------------

LONG_PROMPT = "a calm beach at sunset " * 14  # > 300 characters once whitespace is normalized


@pytest.mark.parametrize(
    ("body", "field", "message_part"),
    [
        ({"backgroundMode": "ai_generate"}, None, "backgroundPrompt is required"),
        ({"backgroundMode": "solid_color"}, None, "backgroundColor is required"),
        ({"backgroundMode": "upload"}, None, "backgroundImageUrl is required"),
        (
            {"backgroundMode": "solid_color", "backgroundColor": "orange"},
            "backgroundColor",
            "backgroundColor: backgroundColor must be a hex colour like #FF8800",
        ),
        (
            {"backgroundMode": "ai_generate", "backgroundPrompt": LONG_PROMPT},
            "backgroundPrompt",
            "at most 300 characters",
        ),
        (
            {"backgroundMode": "ai_generate", "backgroundPrompt": "a man holding a gun"},
            "backgroundPrompt",
            "forbidden keywords: gun",
        ),
        (
            {"backgroundMode": "upload", "backgroundImageUrl": "uploads/../x"},
            "backgroundImageUrl",
            "'..'",
        ),
        (
            {"backgroundMode": "upload", "backgroundImageUrl": "http://example.com/bg.png"},
            "backgroundImageUrl",
            "backgroundImageUrl",
        ),
        ({"backgroundMode": "sepia"}, "backgroundMode", "backgroundMode: Input should be"),
        ({**SOLID, "colour": "#000000"}, "colour", "Extra inputs are not permitted"),
        ({}, "backgroundMode", "Field required"),
    ],
)
def test_invalid_body_is_400_and_charges_nothing(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    body: dict[str, str],
    field: str | None,
    message_part: str,
) -> None:
    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "ValidationError"
    assert message_part in error["message"]
    assert error["details"][0]["field"] == field
    assert balance(db_url, account.id) == 100
    assert_pose_untouched(db_url, generated.pose_id)


def test_body_that_is_not_json_is_400(
    client: TestClient, account: Account, generated: Generated
) -> None:
    response = client.post(
        _change(generated),
        content=b"{not json",
        headers={**account.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["message"] == "The request body is not valid JSON."


@pytest.mark.parametrize(
    "image_url",
    [
        "https://10.0.0.7/background.png",
        "https://127.0.0.1/background.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/background.png",
    ],
)
def test_https_url_to_a_private_address_is_400_and_charges_nothing(
    client: TestClient, db_url: str, account: Account, generated: Generated, image_url: str
) -> None:
    body = {"backgroundMode": "upload", "backgroundImageUrl": image_url}

    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 400, response.text
    assert "private or internal" in response.json()["message"]
    assert balance(db_url, account.id) == 100
    assert_pose_untouched(db_url, generated.pose_id)


def test_someone_elses_upload_key_is_400_and_charges_nothing(
    client: TestClient,
    db_url: str,
    new_account: Callable[..., Account],
    account: Account,
    generated: Generated,
) -> None:
    other = new_account()
    upload = client.post(
        f"{BASE}/uploads",
        files={"file": ("bg.png", png_bytes(), "image/png")},
        headers=other.headers,
    )
    body = {"backgroundMode": "upload", "backgroundImageUrl": upload.json()["key"]}

    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 400
    assert response.json()["message"] == "backgroundImageUrl is not one of your uploads"
    assert balance(db_url, account.id) == 100
    assert_pose_untouched(db_url, generated.pose_id)


def test_pose_id_that_is_not_a_uuid_is_404(client: TestClient, account: Account) -> None:
    response = client.post(f"{BASE}/poses/42/background", json=SOLID, headers=account.headers)

    assert response.status_code == 404
    assert response.json() == {"error": "NotFound", "message": "Pose not found"}


def test_changing_someone_elses_pose_is_404_and_charges_nobody(
    client: TestClient,
    db_url: str,
    new_account: Callable[..., Account],
    account: Account,
    generated: Generated,
) -> None:
    stranger = new_account()

    response = client.post(_change(generated), json=SOLID, headers=stranger.headers)
    missing = client.post(
        f"{BASE}/poses/{uuid.uuid4()}/background", json=SOLID, headers=stranger.headers
    )

    assert response.status_code == 404
    assert response.json() == missing.json() == {"error": "NotFound", "message": "Pose not found"}
    assert balance(db_url, stranger.id) == 100
    assert_pose_untouched(db_url, generated.pose_id)


def test_insufficient_credits_is_403_with_required_and_balance(
    client: TestClient,
    db_url: str,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> None:
    poor = new_account(credits=5)
    generated = new_generation(poor)

    response = client.post(_change(generated), json=SOLID, headers=poor.headers)

    assert response.status_code == 403
    body = response.json()
    assert (body["error"], body["required"], body["balance"]) == ("InsufficientCredits", 10, 5)
    assert balance(db_url, poor.id) == 5
    assert ledger(db_url, poor.id) == []
    assert_pose_untouched(db_url, generated.pose_id)


def test_ai_generate_without_flux_key_is_503_and_charges_nothing(
    client: TestClient, db_url: str, account: Account, generated: Generated
) -> None:
    body = {"backgroundMode": "ai_generate", "backgroundPrompt": "a sunny beach"}

    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 503
    assert response.json() == {
        "error": "ServiceUnavailable",
        "message": "AI background generation is not configured on this server",
    }
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []
    assert_pose_untouched(db_url, generated.pose_id)


def test_unreachable_prefect_is_503_and_refunds_at_once(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    prefect_unreachable: None,
) -> None:
    response = client.post(_change(generated), json=SOLID, headers=account.headers)

    assert response.status_code == 503
    assert response.json()["error"] == "ServiceUnavailable"
    assert "refunded" in response.json()["message"]
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == [(-10, "background_change"), (10, "refund")]
    assert_pose_untouched(db_url, generated.pose_id)


# -- accepted changes -----------------------------------------------------------------------------


def test_accepted_change_is_202_with_a_submitted_flow_run(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    background_deployment: str,
) -> None:
    response = client.post(_change(generated), json=SOLID, headers=account.headers)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["poseId"] == str(generated.pose_id)
    assert body["outputImageUrl"] == (
        f"{BASE}/files/poses/{generated.generation_id}/{generated.pose_id}_bg.png"
    )
    assert (body["creditCharged"], body["creditBalance"]) == (10, 90)
    flow_run = _read_flow_run(body["flowRunId"])
    assert flow_run.parameters["pose_id"] == str(generated.pose_id)
    assert flow_run.parameters["user_id"] == str(account.id)
    change = flow_run.parameters["change"]
    assert (change["backgroundMode"], change["backgroundColor"]) == ("solid_color", "#FF8800")
    assert balance(db_url, account.id) == 90
    assert ledger(db_url, account.id) == [(-10, "background_change")]
    assert pose_status(db_url, generated.pose_id) == "processing"

    again = client.post(_change(generated), json=SOLID, headers=account.headers)

    assert again.status_code == 409
    assert again.json()["error"] == "Conflict"
    assert balance(db_url, account.id) == 90


def test_retry_with_the_same_idempotency_key_returns_the_same_run_and_charges_once(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    background_deployment: str,
) -> None:
    headers = {**account.headers, "Idempotency-Key": "retry-me-1"}

    first = client.post(_change(generated), json=SOLID, headers=headers)
    second = client.post(_change(generated), json=SOLID, headers=headers)

    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["flowRunId"] == second.json()["flowRunId"]
    assert second.json()["creditBalance"] == 90
    assert balance(db_url, account.id) == 90
    assert ledger(db_url, account.id) == [(-10, "background_change")]


def test_same_idempotency_key_on_another_pose_is_another_request(
    client: TestClient,
    db_url: str,
    account: Account,
    new_generation: Callable[[Account], Generated],
    background_deployment: str,
) -> None:
    headers = {**account.headers, "Idempotency-Key": "reused-key"}
    first, second = new_generation(account), new_generation(account)

    one = client.post(_change(first), json=SOLID, headers=headers)
    other = client.post(_change(second), json=SOLID, headers=headers)

    assert one.status_code == other.status_code == 202, other.text
    assert one.json()["flowRunId"] != other.json()["flowRunId"]
    assert _read_flow_run(other.json()["flowRunId"]).parameters["pose_id"] == str(second.pose_id)
    assert balance(db_url, account.id) == 80


def test_own_upload_is_accepted_as_background(
    client: TestClient, account: Account, generated: Generated, background_deployment: str
) -> None:
    upload = client.post(
        f"{BASE}/uploads",
        files={"file": ("bg.png", png_bytes(colour="#22AA22"), "image/png")},
        headers=account.headers,
    )
    body = {"backgroundMode": "upload", "backgroundImageUrl": upload.json()["key"]}

    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 202, response.text
    change = _read_flow_run(response.json()["flowRunId"]).parameters["change"]
    assert change["backgroundImageUrl"] == upload.json()["key"]


def test_unlimited_user_is_charged_nothing(
    client: TestClient,
    db_url: str,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
    background_deployment: str,
) -> None:
    enterprise = new_account(credits=0, unlimited=True)
    generated = new_generation(enterprise)

    response = client.post(_change(generated), json=SOLID, headers=enterprise.headers)

    assert response.status_code == 202, response.text
    assert (response.json()["creditCharged"], response.json()["creditBalance"]) == (0, 0)
    assert balance(db_url, enterprise.id) == 0


def test_ai_generate_with_flux_key_is_accepted(
    client: TestClient,
    account: Account,
    generated: Generated,
    background_deployment: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", "test-key")
    reset_settings()
    body = {"backgroundMode": "ai_generate", "backgroundPrompt": "a  sunny   beach"}

    response = client.post(_change(generated), json=body, headers=account.headers)

    assert response.status_code == 202, response.text
    change = _read_flow_run(response.json()["flowRunId"]).parameters["change"]
    assert change["backgroundPrompt"] == "a sunny beach"
