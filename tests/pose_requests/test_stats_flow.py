"""The `pose-request-stats` flow on the real temporary Prefect server: snapshot and artifacts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posegen.db.community import PoseRequestStatsSnapshot
from posegen.db.migrate import upgrade
from posegen.db.session import session_scope
from tests.conftest import _reset_caches
from tests.pose_requests.dataset import EXPECTED, NOW, load_dataset

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def stats_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The flow reads the settings' database: point them at a fresh one holding the dataset."""
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    upgrade(url)
    monkeypatch.setenv("POSEGEN_DATABASE_URL", url)
    _reset_caches()
    load_dataset(url)
    yield url
    monkeypatch.undo()
    _reset_caches()


def _artifacts(flow_run_id: uuid.UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
            return {a.key: a for a in artifacts}

    return asyncio.run(read())


def test_flow_stores_a_snapshot_and_publishes_both_artifacts(stats_db: str) -> None:
    from flows.pose_request_stats import pose_request_stats

    snapshot_id = asyncio.run(pose_request_stats(as_of=NOW))

    with session_scope(stats_db) as session:
        snapshot = session.get(PoseRequestStatsSnapshot, snapshot_id)
        assert snapshot is not None
        stats, flow_run_id = snapshot.stats, snapshot.flow_run_id
    assert flow_run_id is not None
    assert stats["generatedAt"] == NOW.isoformat()
    for key in ("totalRequests", "totalVotes", "byStatus", "approvalRatio"):
        assert stats[key] == EXPECTED[key], key
    assert [r["poseName"] for r in stats["trendingDecay"]] == [
        name for name, _, _ in EXPECTED["trendingDecay"]
    ]

    artifacts = _artifacts(flow_run_id)
    assert set(artifacts) == {"pose-request-stats", "pose-request-top-voted"}
    markdown = artifacts["pose-request-stats"]
    assert markdown.type == "markdown"
    assert "**7** requests, **13** votes" in markdown.data
    table = artifacts["pose-request-top-voted"]
    assert table.type == "table"
    assert '"R4"' in table.data and str(snapshot_id) in (table.description or "")


def test_deployment_runs_hourly() -> None:
    from deployments.definitions import build_deployments

    (deployment,) = [d for d in build_deployments() if d.name == "pose-request-stats"]
    assert deployment.flow_name == "pose-request-stats"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 * * * *"]  # type: ignore[union-attr]
