"""GET /metrics: Prometheus text with requests by route and status, credits and submitted runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import BASE, Account, Generated

SOLID = {"backgroundMode": "solid_color", "backgroundColor": "#ff8800"}
BACKGROUND_ROUTE = f"{BASE}/poses/{{pose_id}}/background"

Read = Callable[..., float]


@pytest.fixture(scope="session")
def background_deployment(prefect_api: str) -> str:
    """The deployment the API submits to; no runner serves it, so runs stay Scheduled."""
    from flows.background_change import background_change

    background_change.to_deployment(name="background-change").apply()
    return prefect_api


@pytest.fixture
def metric(client: TestClient) -> Read:
    """Read one sample from a fresh scrape (0 when the series does not exist yet)."""

    def read(name: str, **labels: str) -> float:
        response = client.get("/metrics")
        assert response.status_code == 200
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0

    return read


def test_accepted_and_refused_requests_are_counted_by_route_and_status(
    client: TestClient,
    account: Account,
    generated: Generated,
    background_deployment: str,
    metric: Read,
) -> None:
    requests = "posegen_http_requests_total"
    route = {"method": "POST", "route": BACKGROUND_ROUTE}
    before = {status: metric(requests, status=status, **route) for status in ("202", "400")}
    charged = metric("posegen_credits_charged_total", reason="background-change")
    submitted = metric("posegen_flow_runs_submitted_total", flow="background-change")
    url = f"{BASE}/poses/{generated.pose_id}/background"

    assert client.post(url, json=SOLID, headers=account.headers).status_code == 202
    refused = client.post(url, json={"backgroundMode": "nope"}, headers=account.headers)
    assert refused.status_code == 400

    assert metric(requests, status="202", **route) == before["202"] + 1
    assert metric(requests, status="400", **route) == before["400"] + 1
    assert metric("posegen_credits_charged_total", reason="background-change") == charged + 10
    assert metric("posegen_flow_runs_submitted_total", flow="background-change") == submitted + 1


def test_refund_when_the_run_cannot_be_submitted_is_counted(
    client: TestClient,
    account: Account,
    generated: Generated,
    prefect_unreachable: None,
    metric: Read,
) -> None:
    refunded = metric("posegen_credits_refunded_total", reason="background-change")

    response = client.post(
        f"{BASE}/poses/{generated.pose_id}/background", json=SOLID, headers=account.headers
    )

    assert response.status_code == 503
    assert metric("posegen_credits_refunded_total", reason="background-change") == refunded + 10


def test_unknown_paths_share_one_series(client: TestClient, metric: Read) -> None:
    before = metric("posegen_http_requests_total", route="unmatched", status="404")

    for path in ("/nope", "/wp-login.php", f"{BASE}/no-such-thing"):
        assert client.get(path).status_code == 404

    assert metric("posegen_http_requests_total", route="unmatched", status="404") == before + 3
    assert "/wp-login.php" not in client.get("/metrics").text


def test_metrics_is_prometheus_text_with_only_posegen_series(client: TestClient) -> None:
    client.get(f"{BASE}/health")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(response.text))
    names = {family.name for family in families}
    assert {
        "posegen_http_requests",
        "posegen_http_request_duration_seconds",
        "posegen_credits_charged",
        "posegen_credits_refunded",
        "posegen_flow_runs_submitted",
    } <= names
    assert all(name.startswith("posegen_") for name in names)
