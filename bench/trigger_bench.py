"""Trigger latency: `POST /poses/{id}/background` at many concurrent clients (issue 7, target 5).

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/trigger_bench.py [--clients 1,10,100] [--per-client 5] \\
        [--db postgres]

A Prefect server and posegen's database (PostgreSQL by default, see bench/harness.py), the
`background-change` deployment registered (nobody serves it: the runs stay Scheduled, only the
trigger is measured), and the API under uvicorn in its own process, as `posegen up` runs it.
`--clients` clients, each its own user (the per-user rate limit stays on), send `--per-client`
requests one after another, all clients at once; each request charges credits and creates the
flow run. The baseline, same clients, same process, just before: `GET /me` (auth + one
database read), the floor of any authenticated request. Prints p50/p95/p99/max, errors and
requests per second for both.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import answers, isolated_home, start_process, wait_until_ready  # noqa: E402

_HOME = isolated_home("posegen-trigger-bench-")
os.environ["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"] = "background-change/trigger-bench"

import httpx  # noqa: E402

from posegen.api.paths import BASE_PATH as BASE  # noqa: E402


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 96), (120, 100, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def start_api(port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "posegen.api.app:app", "--port", str(port)]
    env = {**os.environ, "POSEGEN_LOG_LEVEL": "WARNING"}
    api = start_process(
        [*command, "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"], log, env=env
    )
    # The API's own health route (the root has none): 200 once the database, storage and
    # Prefect answer it.
    health = f"http://127.0.0.1:{port}{BASE}/health"
    wait_until_ready(
        api, lambda: answers(health), what="the API", log=log, timeout=60, interval=0.3
    )
    return api


def make_clients(count: int, per_client: int) -> list[tuple[str, list[str]]]:
    """One user per client with `per_client` poses; (token, pose ids)."""
    from posegen.auth import create_token
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.domain.users import create_user
    from posegen.storage import get_storage

    photo = tiny_png()
    clients = []
    with session_scope() as session:
        for _ in range(count):
            user = create_user(
                session, f"trigger-{uuid.uuid4().hex[:8]}@example.com", opening_credits=10_000
            )
            generation = import_generation(session, get_storage(), user.id, [photo] * per_client)
            clients.append(
                (create_token(user.id, "USER"), [str(pose.id) for pose in generation.poses])
            )
    return clients


async def drive(
    base: str, clients: list[tuple[str, list[str]]], per_client: int, trigger: bool
) -> tuple[list[float], list[str], float]:
    """Every client sends its requests back to back, all clients at once."""
    latencies: list[float] = []
    errors: list[str] = []
    body = {"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"}
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def one_client(token: str, poses: list[str]) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            for index in range(per_client):
                started = time.perf_counter()
                if trigger:
                    response = await http.post(
                        f"{BASE}/poses/{poses[index]}/background", json=body, headers=headers
                    )
                    ok = response.status_code == 202
                else:
                    response = await http.get(f"{BASE}/me", headers=headers)
                    ok = response.status_code == 200
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors.append(f"{response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(one_client(token, poses) for token, poses in clients))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def report(label: str, latencies: list[float], errors: list[str], elapsed: float) -> float:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    p99 = pct(0.99)
    print(
        f"   {label:<30} p50 {pct(0.50):6.0f} ms  p95 {pct(0.95):6.0f} ms  p99 {p99:6.0f} ms  "
        f"max {ordered[-1] * 1000:6.0f} ms  errors {len(errors)}  "
        f"{len(latencies) / elapsed:5.0f} req/s  mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    for error in sorted(set(errors))[:3]:
        print(f"      e.g. {error}")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10,100", help="concurrent clients, a list")
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    args = parser.parse_args()

    from harness import free_port, prefect_api

    from posegen.db.migrate import upgrade

    print(f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    with prefect_api(args.db) as api_url:
        print(f"Prefect at {api_url}, posegen and Prefect on {args.db}")
        upgrade(os.environ["POSEGEN_DATABASE_URL"])
        from deployments.definitions import build_deployments
        from posegen.config import reset_settings
        from posegen.orchestration import ensure_limits_sync

        reset_settings()
        ensure_limits_sync()
        build_deployments()[0].apply()
        counts = [int(count) for count in args.clients.split(",")]
        # Every round has its own poses (a pose with a change in flight answers 409); the first
        # client takes part in every round, within the per-user rate limit's burst.
        clients = make_clients(max(counts), args.per_client * len(counts))
        port = free_port()
        api = start_api(port, _HOME / "api.log")
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(drive(base, clients[:5], 1, trigger=False))  # connections, imports
            for index, count in enumerate(counts):
                print(f"\n{count} clients x {args.per_client} requests ({args.db})")
                share = slice(index * args.per_client, (index + 1) * args.per_client)
                rounds = [(token, poses[share]) for token, poses in clients[:count]]
                floor = report(
                    "GET /me (baseline)", *asyncio.run(drive(base, rounds, args.per_client, False))
                )
                p99 = report(
                    "POST .../background", *asyncio.run(drive(base, rounds, args.per_client, True))
                )
                print(f"   trigger p99 / baseline p99: {p99 / floor:.2f}x; target p99 <= 100 ms")
        finally:
            api.terminate()
            api.wait(timeout=20)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
