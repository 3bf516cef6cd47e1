"""Flow `pose-request-stats`: load requests and votes → compute statistics → store a snapshot
→ publish the markdown and table artifacts operators read in the Prefect UI. Hourly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from tasks.pose_request_stats import (
    compute_request_stats,
    load_pose_requests,
    publish_stats_artifacts,
    store_stats_snapshot,
)


@flow(name="pose-request-stats", log_prints=True)
async def pose_request_stats(as_of: datetime | None = None) -> uuid.UUID:
    """Summarize the request board as of `as_of` (default now); returns the snapshot id."""
    as_of = as_of or datetime.now(UTC)
    frame = load_pose_requests(as_of)
    stats = compute_request_stats(frame, as_of)
    run_id = flow_run.get_id()
    snapshot_id = store_stats_snapshot(stats, uuid.UUID(run_id) if run_id else None)
    await publish_stats_artifacts(stats, snapshot_id)
    print(f"{stats['totalRequests']} requests, {stats['totalVotes']} votes; snapshot {snapshot_id}")
    return snapshot_id
