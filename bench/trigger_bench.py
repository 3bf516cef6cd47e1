"""Trigger throughput: `POST /poses/{id}/background` against bare flow-run creation (issue 16).

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/trigger_bench.py [--clients 1,10,100] [--per-client 5] \\
        [--db postgres]

A Prefect server and posegen's database (PostgreSQL by default, see bench/harness.py), the
`background-change` deployment registered (nobody serves it: the runs stay Scheduled, only the
trigger is measured), and the API under uvicorn in its own process, as `posegen up` runs it.
At each client count, in this order and in the same run:

    bare     `create_flow_run_from_deployment` straight to Prefect from this process (one
             shared client, as any caller would hold one), the same parameters the API sends:
             Prefect's own ceiling on this machine
    API      `--clients` clients, each its own user (the per-user rate limit stays on), each
             request authenticated, charged and submitted by the API
    GET /me  (with `--floor`) auth + one database read: the floor of any API request
    bare + burner  (with `--control`) bare again, beside a process that burns as much CPU as the
             API process and its database backends burned per second of the API round: what
             Prefect alone reaches when the cores carry the API's load but nothing waits on it

After each side it prints the CPU each part of the stack spent per request (this process's
clients, the API, the Prefect server, the PostgreSQL backends of their databases): on a 2-core
machine where every process shares the cores, that split is what bounds the API's share.

Each client sends `--per-client` requests back to back, all clients at once. Prints
p50/p95/p99/max, errors and requests per second, and issue 16's figures: the API's throughput
as a share of bare (target >= 90 %) and its p99 against bare p99 + 150 ms, with zero errors.
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
from harness import (  # noqa: E402
    CpuMeter,
    answers,
    cmdline,
    isolated_home,
    start_process,
    wait_until_ready,
)

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
        api, lambda: answers(health, timeout=10), what="the API", log=log, timeout=240, interval=0.3
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


async def drive_bare(
    deployment_id: uuid.UUID, clients: int, per_client: int
) -> tuple[list[float], list[str], float]:
    """Prefect alone: `clients` callers creating runs back to back through one shared client."""
    from prefect.client.orchestration import get_client

    latencies: list[float] = []
    errors: list[str] = []
    change = {"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"}
    async with get_client() as client:

        async def one_client() -> None:
            for _ in range(per_client):
                request_id = uuid.uuid4()
                parameters = {
                    "pose_id": str(uuid.uuid4()),
                    "user_id": str(uuid.uuid4()),
                    "request_id": str(request_id),
                    "change": change,
                }
                started = time.perf_counter()
                try:
                    await client.create_flow_run_from_deployment(
                        deployment_id,
                        parameters=parameters,
                        idempotency_key=f"background-change:{request_id}",
                        tags=["posegen", "background-change"],
                    )
                except Exception as exc:
                    errors.append(type(exc).__name__)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


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


_BURNER = """
import sys, time
busy, period = float(sys.argv[1]) * 0.01, 0.01
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < busy:
        pass
    time.sleep(max(0.0, period - (time.perf_counter() - start)))
"""


def burner(cores: float) -> subprocess.Popen[bytes]:
    """A process that keeps `cores` of one core busy (duty cycle in 10 ms periods)."""
    return subprocess.Popen([sys.executable, "-c", _BURNER, f"{min(cores, 1.0):.3f}"])


def report(
    label: str, latencies: list[float], errors: list[str], elapsed: float
) -> tuple[float, float, int]:
    """Print one round; (p99 seconds, requests per second, errors)."""
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
    return p99 / 1000, len(latencies) / elapsed, len(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10,100", help="concurrent clients, a list")
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    parser.add_argument("--floor", action="store_true", help="also GET /me, the API's floor")
    parser.add_argument(
        "--control", action="store_true", help="also bare beside a burner of the API's CPU"
    )
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
        deployment_id = build_deployments()[0].apply()
        counts = [int(count) for count in args.clients.split(",")]
        # Every round has its own poses (a pose with a change in flight answers 409); the first
        # client takes part in every round, within the per-user rate limit's burst.
        clients = make_clients(max(counts), args.per_client * len(counts))
        port = free_port()
        api = start_api(port, _HOME / "api.log")
        base = f"http://127.0.0.1:{port}"
        verdicts = []
        from posegen.runtime.processes import process_tree

        (server,) = [pid for pid in process_tree(os.getpid()) if "server start" in cmdline(pid)]
        meter = CpuMeter({"API": api.pid, "Prefect server": server})
        try:
            asyncio.run(drive(base, clients[:5], 1, trigger=False))  # connections, imports
            asyncio.run(drive_bare(deployment_id, 5, 1))
            for index, count in enumerate(counts):
                print(f"\n{count} clients x {args.per_client} requests ({args.db})")
                share = slice(index * args.per_client, (index + 1) * args.per_client)
                rounds = [(token, poses[share]) for token, poses in clients[:count]]
                if args.floor:
                    report(
                        "GET /me (floor)", *asyncio.run(drive(base, rounds, args.per_client, False))
                    )
                requests = count * args.per_client
                before = meter.read()
                bare_p99, bare_rate, _ = report(
                    "bare create_flow_run",
                    *asyncio.run(drive_bare(deployment_id, count, args.per_client)),
                )
                between = meter.read()
                print(f"      {CpuMeter.per_request(before, between, requests)}")
                api_started = time.perf_counter()
                p99, rate, errors = report(
                    "POST .../background", *asyncio.run(drive(base, rounds, args.per_client, True))
                )
                api_seconds = time.perf_counter() - api_started
                # The run-id bookkeeping runs after each 202: let it finish before reading.
                time.sleep(1)
                after = meter.read()
                print(f"      {CpuMeter.per_request(between, after, requests)}")
                if args.control:
                    roles = ("API", "PostgreSQL backends")
                    load = sum(after[r] - between[r] for r in roles) / api_seconds
                    burning = burner(load)
                    try:
                        report(
                            f"bare + burner ({load:.2f} core)",
                            *asyncio.run(drive_bare(deployment_id, count, args.per_client)),
                        )
                        print(f"      {CpuMeter.per_request(after, meter.read(), requests)}")
                    finally:
                        burning.kill()
                        burning.wait()
                share_of_bare = rate / bare_rate
                extra = (p99 - bare_p99) * 1000
                verdict = (
                    "met" if share_of_bare >= 0.9 and extra <= 150 and not errors else "NOT met"
                )
                verdicts.append(
                    f"   {verdict:<8} {count} clients: API {share_of_bare:.0%} of "
                    f"bare throughput (>= 90 %), p99 {extra:+.0f} ms vs bare (<= +150), "
                    f"{errors} errors"
                )
                print(verdicts[-1])
        finally:
            api.terminate()
            api.wait(timeout=20)
    print("\nissue 16 target 4 (first half):")
    print("\n".join(verdicts))
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
