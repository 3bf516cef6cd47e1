"""Prefect's own ceiling and its scale-out: bare `create_flow_run_from_deployment` throughput of
the Prefect server `posegen up` runs, at 1 and at N API workers (issue 16, target 4).

    .venv/bin/python bench/prefect_scaleout_bench.py [--prefect-workers 1,2] [--clients 100] \\
        [--per-client 10] [--redis-url redis://127.0.0.1:6379/14]

For each worker count, started exactly as `posegen up --prefect-workers N` starts it
(posegen/runtime/startup.py: the embedded PostgreSQL of a fresh home, `prefect server start
--workers N`, and for N > 1 a `prefect server services start` process and Redis messaging,
ordering, lease storage and docket): one deployment nobody serves (the runs stay Scheduled, so
only run creation is measured), then `--clients` concurrent clients, each its own Prefect client
(its own connections, as separate API processes would have), create `--per-client` runs one
after another. Prints runs/s, p50/p95/p99/max and errors per worker count, and the ratio of
each to 1 worker measured in the same run. The Redis database is flushed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import free_port  # noqa: E402

os.environ.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})


async def create_runs(
    api: str, clients: int, per_client: int
) -> tuple[list[float], list[str], float]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as setup:
        flow_id = await setup.create_flow_from_name("scaleout-bench")
        deployment_id = await setup.create_deployment(
            flow_id=flow_id, name=f"bench-{uuid.uuid4().hex[:6]}", entrypoint="bench.py:flow"
        )
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client() -> None:
        async with PrefectClient(api) as client:
            for _ in range(per_client):
                started = time.perf_counter()
                try:
                    await client.create_flow_run_from_deployment(deployment_id, parameters={})
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def measure(workers: int, clients: int, per_client: int, redis_url: str) -> float:
    """Start the stack's Prefect part for `workers`, measure, stop; returns runs/s."""
    home = Path(tempfile.mkdtemp(prefix=f"posegen-scaleout-{workers}-"))
    os.environ.update(
        {
            "POSEGEN_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "POSEGEN_PREFECT_WORKERS": str(workers),
            "POSEGEN_PREFECT_PORT": str(free_port()),
            "POSEGEN_REDIS_URL": redis_url,
        }
    )
    from posegen.config import reset_settings

    reset_settings()
    from posegen.config import get_settings
    from posegen.runtime.processes import Child, Spawner, answers
    from posegen.runtime.startup import stack_environment, start_postgres, start_prefect
    from posegen.runtime.supervisor import stop_all, wait_until

    settings = get_settings()
    children: list[Child] = []
    logs = home / "logs"
    logs.mkdir(parents=True)
    spawn = Spawner(stack_environment(settings), logs, children)
    api = settings.local_prefect_api_url
    try:
        start_postgres(settings, spawn, children)
        server = start_prefect(settings, spawn)
        wait_until(lambda: answers(f"{api}/health"), "the Prefect server", server, children)
        asyncio.run(create_runs(api, 5, 2))  # warm: imports, connections, first queries
        latencies, errors, elapsed = asyncio.run(create_runs(api, clients, per_client))
    finally:
        stop_all(children)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    rate = (len(latencies) - len(errors)) / elapsed
    print(
        f"  {workers} worker(s): {rate:5.1f} runs/s  p50 {pct(0.5):5.0f} ms"
        f"  p95 {pct(0.95):5.0f} ms  p99 {pct(0.99):5.0f} ms"
        f"  max {ordered[-1] * 1000:5.0f} ms  errors {len(errors)}"
    )
    for error in sorted(set(errors))[:3]:
        print(f"     e.g. {error}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-workers", default="1,2", help="worker counts, a list")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="s for a fresh Prefect database"
    )
    args = parser.parse_args()
    from posegen.runtime import supervisor

    supervisor.STARTUP_TIMEOUT = args.startup_timeout  # a loaded machine migrates slowly
    import redis

    flush = redis.Redis.from_url(args.redis_url)
    flush.flushdb()
    counts = [int(count) for count in args.prefect_workers.split(",")]
    print(
        f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}; "
        f"{args.clients} clients x {args.per_client} runs, bare create_flow_run_from_deployment"
    )
    try:
        rates = {
            count: measure(count, args.clients, args.per_client, args.redis_url) for count in counts
        }
    finally:
        flush.flushdb()
    base = rates.get(1)
    if base:
        for count, rate in rates.items():
            print(f"  {count} worker(s) / 1 worker: {rate / base:.2f}x")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
