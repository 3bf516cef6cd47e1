"""Benchmark of the pose-request-stats computation: 100,000 requests and 1,000,000 votes.

Creates a fresh PostgreSQL database (127.0.0.1:5432, user postgres, trust auth), migrates it,
fills it with `generate_series` in the server, times each step of the flow (SQL load, pandas
computation, snapshot, rendering) and, with `--flow`, the real flow on a temporary Prefect
server; then drops the database.

    .venv/bin/python bench/stats_bench.py [--requests 100000] [--votes 1000000] [--flow]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
USERS = 20_000
CATEGORIES = 12
T = TypeVar("T")

# Ids are md5-derived UUIDs of small integers, so every table can refer to them without joins.
FILL = """
INSERT INTO users (id, email, role, credits, enterprise_unlimited, created_at)
SELECT md5('user' || n)::uuid, 'bench-' || n || '@example.com',
       CASE WHEN n = 0 THEN 'ADMIN' ELSE 'USER' END, 0, false, now()
FROM generate_series(0, :users - 1) AS n;

INSERT INTO pose_categories (id, name, created_at)
SELECT md5('category' || n)::uuid, 'Category ' || n, now()
FROM generate_series(0, :categories - 1) AS n;

INSERT INTO pose_requests (id, user_id, pose_name, normalized_name, category_id, votes_count,
                           status, created_at, updated_at)
SELECT md5('request' || n)::uuid,
       md5('user' || (n % :users))::uuid,
       'Pose request ' || n, 'pose request ' || n,
       CASE WHEN n % 10 = 0 THEN NULL ELSE md5('category' || (n % :categories))::uuid END,
       0,
       (ARRAY['pending','pending','pending','approved','approved','in_progress',
              'completed','completed','rejected','pending'])[n % 10 + 1],
       now() - (n % 365) * interval '1 day' - (n % 24) * interval '1 hour',
       now()
FROM generate_series(0, :requests - 1) AS n;

-- Vote g goes to request g % R from user (r + k * 1999) % U, k = g / R: unique per request.
INSERT INTO pose_request_votes (request_id, user_id, created_at)
SELECT md5('request' || (g % :requests))::uuid,
       md5('user' || (((g % :requests) + (g / :requests) * 1999) % :users))::uuid,
       now() - (g % 90) * interval '1 day' - (g % 1440) * interval '1 minute'
FROM generate_series(0, :votes - 1) AS g;

UPDATE pose_requests AS r SET votes_count = v.c
FROM (SELECT request_id, count(*) AS c FROM pose_request_votes GROUP BY request_id) AS v
WHERE r.id = v.request_id;

-- History: the first admin action hours after creation, completion days later.
INSERT INTO pose_request_status_changes (id, request_id, from_status, to_status, admin_id,
                                         created_at)
SELECT gen_random_uuid(), id, 'pending',
       CASE WHEN status = 'rejected' THEN 'rejected' ELSE 'approved' END,
       md5('user0')::uuid, created_at + interval '5 hours'
FROM pose_requests WHERE status <> 'pending';

INSERT INTO pose_request_status_changes (id, request_id, from_status, to_status, admin_id,
                                         created_at)
SELECT gen_random_uuid(), id, 'in_progress', 'completed', md5('user0')::uuid,
       created_at + interval '3 days'
FROM pose_requests WHERE status = 'completed';

ANALYZE;
"""


def timed(label: str, fn: Callable[[], T], timings: dict[str, float]) -> T:
    start = time.perf_counter()
    result = fn()
    timings[label] = time.perf_counter() - start
    print(f"  {label:<32} {timings[label]:7.2f} s", flush=True)
    return result


@contextmanager
def bench_database() -> Iterator[str]:
    from harness import pg_database

    from posegen.db.session import reset_engines

    with pg_database("posegen_bench", ADMIN_URL) as url:
        try:
            yield url
        finally:
            reset_engines()  # the bench's connections would hold the database open


def fill(url: str, requests: int, votes: int) -> None:
    engine = create_engine(url)
    params = {"users": USERS, "categories": CATEGORIES, "requests": requests, "votes": votes}
    with engine.begin() as conn:
        for statement in FILL.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), params)
    engine.dispose()


def run_steps(url: str) -> dict[str, Any]:
    from posegen.db.session import session_scope
    from posegen.domain import request_stats

    timings: dict[str, float] = {}
    now = datetime.now(UTC)
    start = time.perf_counter()
    with session_scope(url) as session:
        frame = timed(
            "load (SQL aggregates → frame)",
            lambda: request_stats.load_request_frame(session, now),
            timings,
        )
    stats = timed("compute (pandas)", lambda: request_stats.compute_stats(frame, now), timings)
    with session_scope(url) as session:
        timed("store snapshot", lambda: request_stats.store_snapshot(session, stats), timings)
    timed(
        "render artifacts",
        lambda: (request_stats.render_markdown(stats), request_stats.top_voted_rows(stats)),
        timings,
    )
    timings["total"] = time.perf_counter() - start
    print(f"  {'total':<32} {timings['total']:7.2f} s")
    print(f"  → {stats['totalRequests']} requests, {stats['totalVotes']} votes")
    return stats


def run_flow(url: str) -> None:
    """The real flow (tasks, artifacts, snapshot) against a temporary Prefect server."""
    os.environ["POSEGEN_DATABASE_URL"] = url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    from flows.pose_request_stats import pose_request_stats
    from posegen.config import reset_settings

    reset_settings()
    with prefect_test_harness(server_startup_timeout=60):
        start = time.perf_counter()
        asyncio.run(pose_request_stats())
        print(f"  {'flow run (incl. Prefect calls)':<32} {time.perf_counter() - start:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--flow", action="store_true", help="also run the real Prefect flow")
    args = parser.parse_args()
    if args.votes > args.requests * 10:
        parser.error("at most 10 votes per request (votes are unique per user and request)")

    from posegen.db.migrate import upgrade

    with bench_database() as url:
        print(f"database {url.rsplit('/', 1)[1]}: {args.requests} requests, {args.votes} votes")
        timings: dict[str, float] = {}
        timed("migrate", lambda: upgrade(url), timings)
        timed("generate data", lambda: fill(url, args.requests, args.votes), timings)
        print("stats computation, step by step:")
        run_steps(url)
        if args.flow:
            print("the flow:")
            run_flow(url)


if __name__ == "__main__":
    main()
