"""Export endpoints: catalog, starting a run, results, ZIP download, regenerate, settings."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from posegen.storage import get_storage
from tests.api.conftest import BASE, Account
from tests.exports.conftest import (
    ExportFixture,
    load_pose,
    small_subject_png,
    store_exact_mask,
)


@pytest.fixture
def owned(account: Account, generation_of: Callable[..., ExportFixture]) -> ExportFixture:
    """The account's generation of two small poses with exact masks (no segmentation needed)."""
    fixture = generation_of([small_subject_png(), small_subject_png()], user_id=account.id)
    for pose_id in fixture.pose_ids:
        store_exact_mask(pose_id)
    return fixture


def test_catalog_lists_formats_by_category(client: TestClient, account: Account) -> None:
    response = client.get(f"{BASE}/export-formats", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    by_name = {fmt["name"]: fmt for fmt in body["formats"]}
    assert len(by_name) == 7 and body["categories"] == ["social", "ecommerce", "print"]
    assert by_name["tiktok"]["safeArea"] == {"top": 150, "right": 150, "bottom": 440, "left": 0}
    assert by_name["shopee_product"]["maxBytes"] == 2_000_000
    assert by_name["a4_print"]["dpi"] == 300 and by_name["original"]["width"] is None
    assert body["custom"] == {"syntax": "custom:WxH", "minSide": 64, "maxSide": 8000}


def test_regenerate_replaces_only_that_file(
    any_storage: str, client: TestClient, account: Account, owned: ExportFixture
) -> None:
    pose_id = owned.pose_ids[0]
    storage = get_storage()
    urls = {}
    for name in ("tiktok", "shopee_product"):
        response = client.post(
            f"{BASE}/poses/{pose_id}/regenerate-export",
            json={"format": name},
            headers=account.headers,
        )
        assert response.status_code == 200, response.text
        urls[name] = response.json()["exportUrl"]
    keys = dict(load_pose(pose_id).export_formats)
    assert sorted(keys) == ["shopee_product", "tiktok"]
    if storage.is_local:
        assert urls["tiktok"].endswith(keys["tiktok"])
    before = {name: storage.read_bytes(key) for name, key in keys.items()}
    other_pose_before = storage.read_bytes(load_pose(owned.pose_ids[1]).image_key)

    # The pose's image changes (as after a background change); only tiktok is re-rendered.
    image_key = load_pose(pose_id).image_key
    recoloured = ImageOps.invert(
        Image.open(io.BytesIO(storage.read_bytes(image_key))).convert("RGB")
    )
    buffer = io.BytesIO()
    recoloured.save(buffer, format="PNG")
    storage.write_bytes(image_key, buffer.getvalue())
    response = client.post(
        f"{BASE}/poses/{pose_id}/regenerate-export",
        json={"format": "tiktok"},
        headers=account.headers,
    )
    assert response.status_code == 200
    assert storage.read_bytes(keys["tiktok"]) != before["tiktok"]
    assert storage.read_bytes(keys["shopee_product"]) == before["shopee_product"]
    assert storage.read_bytes(load_pose(owned.pose_ids[1]).image_key) == other_pose_before
    assert storage.list(f"exports/{owned.generation_id}/") == sorted(keys.values())


def test_zip_download_names_files_per_pose_and_reports_missing_formats(
    client: TestClient, account: Account, owned: ExportFixture
) -> None:
    first, second = owned.pose_ids
    zip_url = f"{BASE}/generations/{owned.generation_id}/export-zip"
    assert client.get(zip_url, headers=account.headers).status_code == 409
    for pose_id in owned.pose_ids:
        client.post(
            f"{BASE}/poses/{pose_id}/regenerate-export",
            json={"format": "original"},
            headers=account.headers,
        )
    client.post(
        f"{BASE}/poses/{first}/regenerate-export",
        json={"format": "custom:200x200"},
        headers=account.headers,
    )
    missing = client.get(
        zip_url, params={"formats": "original,custom:200x200"}, headers=account.headers
    )
    assert missing.status_code == 409
    assert missing.json()["missing"] == [{"poseId": str(second), "formats": ["custom:200x200"]}]

    response = client.get(zip_url, params={"formats": "original"}, headers=account.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"poses-{owned.generation_id}.zip" in response.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert sorted(names) == sorted(f"{p}/pose-{p}-original.png" for p in owned.pose_ids)

    everything = zipfile.ZipFile(io.BytesIO(client.get(zip_url, headers=account.headers).content))
    assert f"{first}/pose-{first}-custom-200x200.jpg" in everything.namelist()
    assert len(everything.namelist()) == 3

    results = client.get(
        f"{BASE}/generations/{owned.generation_id}/results", headers=account.headers
    )
    assert results.status_code == 200
    poses = {pose["id"]: pose for pose in results.json()["poses"]}
    assert sorted(poses[str(first)]["exportFormats"]) == ["custom:200x200", "original"]


def test_unknown_formats_are_400_and_other_users_get_404(
    client: TestClient, new_account: Callable[..., Account], account: Account, owned: ExportFixture
) -> None:
    pose_id = owned.pose_ids[0]
    bad = client.post(
        f"{BASE}/poses/{pose_id}/regenerate-export",
        json={"format": "myspace"},
        headers=account.headers,
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "ValidationError" and "instagram_story" in bad.json()["message"]
    zip_bad = client.get(
        f"{BASE}/generations/{owned.generation_id}/export-zip",
        params={"formats": "custom:10x10"},
        headers=account.headers,
    )
    assert zip_bad.status_code == 400 and zip_bad.json()["error"] == "ValidationFailed"

    stranger = new_account()
    for method, path, body in (
        ("post", f"/poses/{pose_id}/regenerate-export", {"format": "tiktok"}),
        ("get", f"/generations/{owned.generation_id}/results", None),
        ("get", f"/generations/{owned.generation_id}/export-zip", None),
        ("post", f"/generations/{owned.generation_id}/exports", {"formats": ["tiktok"]}),
    ):
        response = client.request(method, BASE + path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "NotFound"


def test_start_export_submits_a_run(
    client: TestClient, account: Account, owned: ExportFixture, prefect_api: str
) -> None:
    from prefect.client.orchestration import get_client

    from flows.export import multi_format_export
    from posegen.config import get_settings

    name = get_settings().deployment_multi_format_export.split("/", 1)[1]
    multi_format_export.to_deployment(name=name).apply()
    url = f"{BASE}/generations/{owned.generation_id}/exports"
    body = {"formats": ["tiktok", "custom:300x300"], "poseIds": [str(owned.pose_ids[1])]}
    response = client.post(url, json=body, headers={**account.headers, "Idempotency-Key": "k1"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["poseIds"] == [str(owned.pose_ids[1])]
    assert accepted["zipUrl"].endswith(f"poses-{owned.generation_id}.zip")
    again = client.post(url, json=body, headers={**account.headers, "Idempotency-Key": "k1"})
    assert again.json()["flowRunId"] == accepted["flowRunId"]
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(uuid.UUID(accepted["flowRunId"]))
    assert run.parameters["generation_id"] == str(owned.generation_id)
    assert run.parameters["request"]["poseIds"] == [str(owned.pose_ids[1])]

    foreign = {"formats": ["tiktok"], "poseIds": [str(uuid.uuid4())]}
    assert client.post(url, json=foreign, headers=account.headers).status_code == 400
    assert client.post(url, json={"formats": ["x"]}, headers=account.headers).status_code == 400


def test_start_export_is_503_when_prefect_is_down(
    client: TestClient, account: Account, owned: ExportFixture, prefect_unreachable: None
) -> None:
    url = f"{BASE}/generations/{owned.generation_id}/exports"
    response = client.post(url, json={"formats": ["tiktok"]}, headers=account.headers)
    assert response.status_code == 503 and response.json()["error"] == "ServiceUnavailable"


def test_default_formats_setting_round_trip(client: TestClient, account: Account) -> None:
    url = f"{BASE}/settings/export-formats"
    assert client.get(url, headers=account.headers).json() == {"formats": []}
    put = client.put(
        url, json={"formats": ["tiktok", "custom:100x100", "tiktok"]}, headers=account.headers
    )
    assert put.status_code == 200 and put.json() == {"formats": ["tiktok", "custom:100x100"]}
    assert client.get(url, headers=account.headers).json()["formats"] == [
        "tiktok",
        "custom:100x100",
    ]
    assert client.put(url, json={"formats": ["nope"]}, headers=account.headers).status_code == 400
    assert client.put(url, json={"formats": []}, headers=account.headers).json() == {"formats": []}
