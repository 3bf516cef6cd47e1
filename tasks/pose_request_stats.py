"""Tasks of the pose-request-stats flow: load with SQL, compute with pandas, store, publish.

Nothing is cached: each run must see the database as it is now. The frame passes between
tasks in memory (same process), never through Prefect result storage.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from posegen.db.session import session_scope
from posegen.domain import request_stats

MARKDOWN_KEY = "pose-request-stats"
TABLE_KEY = "pose-request-top-voted"


@task(name="load-pose-requests", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load_pose_requests(as_of: datetime) -> pd.DataFrame:
    with session_scope() as session:
        return request_stats.load_request_frame(session, as_of)


@task(name="compute-request-stats", cache_policy=NO_CACHE)
def compute_request_stats(frame: pd.DataFrame, as_of: datetime) -> dict[str, Any]:
    return request_stats.compute_stats(frame, as_of)


@task(name="store-stats-snapshot", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def store_stats_snapshot(stats: dict[str, Any], flow_run_id: uuid.UUID | None) -> uuid.UUID:
    with session_scope() as session:
        return request_stats.store_snapshot(session, stats, flow_run_id)


@task(name="publish-stats-artifacts", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
async def publish_stats_artifacts(stats: dict[str, Any], snapshot_id: uuid.UUID) -> None:
    """A markdown summary and a top-voted table, keyed so the UI shows their history."""
    await acreate_markdown_artifact(
        key=MARKDOWN_KEY,
        markdown=request_stats.render_markdown(stats),
        description=f"Pose request statistics (snapshot {snapshot_id})",
    )
    await acreate_table_artifact(
        key=TABLE_KEY,
        table=request_stats.top_voted_rows(stats)
        or [{"rank": 0, "poseName": "no requests yet", "status": "", "votes": 0, "id": ""}],
        description=f"Top {request_stats.TOP_N} pose requests by votes (snapshot {snapshot_id})",
    )
