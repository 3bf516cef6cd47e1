"""End-to-end background-change latency through a served runner, split by phase.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/e2e_bench.py [--requests 5] [--polls 1,2]

As tests/e2e does: a temporary Prefect server (SQLite), a real `python -m deployments.serve`
runner subprocess (one per poll frequency, `PREFECT_RUNNER_POLL_FREQUENCY` set), the FastAPI
app in this process (TestClient), an embedded SQLite app database and local storage in a temp
folder. Each request changes a fresh 1024x1536 pose to a solid colour, sequentially. The
phases come from the flow run's state history and its task runs (server timestamps, same
machine), so they add up to the wall time:

    submit      POST .../background → 202 (auth, charge, create the flow run)
    poll wait   run created (Scheduled) → the runner picks it up (Pending)
    process     Pending → Running: subprocess start, imports of flows/tasks/posegen/prefect
    <task>      each task's own run time (remove-background includes `import rembg` and the
                model load: the first segmentation in a fresh process)
    overhead    gaps between tasks: Prefect task orchestration, concurrency slot, hooks
    finish      last task end → Completed

Then the cost of a fresh process alone, measured in subprocesses: imports, `import rembg`,
and the session load.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_HOME = Path(tempfile.mkdtemp(prefix="posegen-e2e-bench-"))
os.environ.update(
    {
        "POSEGEN_HOME": str(_HOME),
        "PREFECT_HOME": str(_HOME / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "POSEGEN_JWT_SECRET": "bench-" + uuid.uuid4().hex,
        "POSEGEN_DATABASE_URL": f"sqlite:///{_HOME / 'posegen.db'}",
        "POSEGEN_STORAGE_URL": str(_HOME / "storage"),
    }
)
os.environ.setdefault("REMBG_HOME", str(ROOT / ".posegen" / "models"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".posegen" / "numba-cache"))

import httpx  # noqa: E402

BASE = "/api/apps/pose-generator"
TASK_ORDER = (
    "charge-credits",
    "load-original",
    "remove-background",
    "build-background",
    "composite",
    "update-pose",
    "emit-completed",
)


def _ts(value: str | None) -> float:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s [{min(values):.2f}-{max(values):.2f}]"


def person_png() -> bytes:
    from change_bench import person_photo

    buffer = io.BytesIO()
    person_photo().save(buffer, format="PNG")
    return buffer.getvalue()


def start_runner(api: str, deployment: str, poll: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_RUNNER_POLL_FREQUENCY": str(poll),
        "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": deployment,
        "PYTHONUNBUFFERED": "1",
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        if httpx.get(f"{api}/deployments/name/{deployment}", timeout=5).status_code == 200:
            return runner
        time.sleep(0.5)
    raise RuntimeError("the runner never registered its deployment")


def stop_runner(runner: subprocess.Popen[bytes]) -> None:
    runner.terminate()
    try:
        runner.wait(timeout=30)
    except subprocess.TimeoutExpired:
        runner.kill()


def phases(api: str, run_id: str, posted: float, accepted: float) -> dict[str, float]:
    """Seconds per phase of one finished run, from its states and task runs."""
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=10)
    first: dict[str, float] = {}
    for state in sorted(states.json(), key=lambda s: _ts(s["timestamp"])):
        first.setdefault(state["type"], _ts(state["timestamp"]))
    tasks = httpx.post(
        f"{api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [run_id]}}},
        timeout=10,
    ).json()
    spans = {t["name"].rsplit("-", 1)[0]: (_ts(t["start_time"]), _ts(t["end_time"])) for t in tasks}
    result = {
        "submit": accepted - posted,
        "poll wait": first["PENDING"] - first["SCHEDULED"],
        "process": first["RUNNING"] - first["PENDING"],
    }
    cursor = first["RUNNING"]
    overhead = 0.0
    for name in TASK_ORDER:
        start, end = spans[name]
        overhead += max(0.0, start - cursor)
        result[name] = end - start
        cursor = end
    result["overhead"] = overhead
    result["finish"] = first["COMPLETED"] - cursor
    result["total"] = first["COMPLETED"] - posted
    return result


def run_requests(api: str, count: int, deployment: str) -> list[dict[str, float]]:
    from fastapi.testclient import TestClient

    from posegen.api.app import create_app
    from posegen.auth import create_token
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.domain.users import create_user
    from posegen.storage import get_storage

    os.environ["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"] = deployment
    from posegen.config import reset_settings

    reset_settings()
    photo = person_png()
    with session_scope() as session:
        user = create_user(
            session, f"bench-{uuid.uuid4().hex[:8]}@example.com", opening_credits=10_000
        )
        user_id = user.id
    headers = {"Authorization": f"Bearer {create_token(user_id, 'USER')}"}
    results = []
    with TestClient(create_app()) as client:
        for _ in range(count):
            with session_scope() as session:
                pose_id = import_generation(session, get_storage(), user_id, [photo]).poses[0].id
            posted = time.time()
            accepted = client.post(
                f"{BASE}/poses/{pose_id}/background",
                json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
                headers=headers,
            )
            done = time.time()
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["flowRunId"]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
                if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                time.sleep(0.05)
            assert state["type"] == "COMPLETED", state
            results.append(phases(api, run_id, posted, done))
            print(f"   run {len(results)}: total {results[-1]['total']:.2f} s", flush=True)
    return results


def fresh_process_costs(rounds: int) -> None:
    """What each served run's new process pays before and during its first segmentation."""
    probes = {
        "python -c pass": "pass",
        "import flows.background_change": "import flows.background_change",
        "import rembg": "import rembg",
        "get_session() (rembg import + u2netp load)": (
            "from posegen.imaging.segmentation import get_session; get_session()"
        ),
    }
    print("\nfresh-process costs (subprocess wall time):")
    for label, code in probes.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            times.append(time.perf_counter() - start)
        print(f"   {label:<44}: {_median(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--polls", default="1,2", help="runner poll frequencies to compare")
    parser.add_argument("--process-rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from posegen.db.migrate import upgrade

    upgrade(os.environ["POSEGEN_DATABASE_URL"])
    print(f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    with prefect_test_harness(server_startup_timeout=90):
        api = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = api
        from posegen.orchestration import ensure_limits_sync

        ensure_limits_sync()
        for poll in (int(p) for p in args.polls.split(",")):
            deployment = f"background-change/bench-{uuid.uuid4().hex[:8]}"
            runner = start_runner(api, deployment, poll, _HOME / f"runner-{poll}.log")
            try:
                print(f"\n== PREFECT_RUNNER_POLL_FREQUENCY={poll}: {args.requests} requests")
                results = run_requests(api, args.requests, deployment)
            finally:
                stop_runner(runner)
            for name in results[0]:
                print(f"   {name:<18}: {_median([r[name] for r in results])}")
    fresh_process_costs(args.process_rounds)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (machine shared with other work)")


if __name__ == "__main__":
    main()
