"""Serve every posegen deployment from one process (what `make run` starts).

Background changes, which users wait for, run in a pool of warm processes that loaded the
model once (`posegen.runtime.warm_pool`, `POSEGEN_WARM_WORKERS`, docs/ARCHITECTURE.md). Every other
flow run starts in a fresh subprocess of Prefect's runner. Either way a crash or a kill of one
run cannot take the others down; the hooks and the ledger take care of its credits.
"""

from __future__ import annotations

import os

from prefect import serve

from deployments.definitions import build_deployments
from flows.background_change import background_change
from posegen.config import get_settings
from posegen.orchestration import ensure_limits_sync
from posegen.runtime.warm_pool import WarmPool

__all__ = ["build_deployments", "main"]


def main() -> None:
    settings = get_settings()
    # Every flow run this process starts (warm or a runner subprocess) inherits this: the
    # zombie automation's window is three of posegen's beats, and Prefect's own default (180 s)
    # would let it crash every healthy run longer than 90 s. `posegen up` sets it too; a
    # machine started by hand (scaling out) got Prefect's default.
    os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(settings.flows_heartbeat_seconds)
    ensure_limits_sync()
    deployments = build_deployments()
    pool = None
    if settings.warm_workers > 0:
        pool = WarmPool(
            background_change,
            deployments.pop(0),
            flow_path="flows.background_change:background_change",
            warm_up="posegen.imaging.warm:warm_up",
            size=settings.warm_workers,
            poll_seconds=settings.warm_poll_seconds,
        )
        pool.start()
    try:
        serve(*deployments, limit=settings.runner_limit)
    finally:
        if pool is not None:
            pool.stop()


if __name__ == "__main__":
    main()
