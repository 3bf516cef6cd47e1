"""End-to-end background-change latency (API request → completion event), split by phase.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/e2e_bench.py [--requests 20] [--modes warm,subprocess] [--poll 1]

As tests/e2e does: a temporary Prefect server (SQLite), a real `python -m deployments.serve`
subprocess per mode — `warm` (the default: background changes in the warm pool,
`POSEGEN_WARM_WORKERS=3`) or `subprocess` (`POSEGEN_WARM_WORKERS=0`: Prefect's runner starts a
fresh process per run, polling every `--poll` s) — the FastAPI app in this process
(TestClient), an embedded SQLite app database and local storage in a temp folder. One
unmeasured request first (the pool's processes finish warming), then each request changes a
fresh 1024x1536 pose to a solid colour, sequentially. The completion is the moment this process
receives `posegen.background-change.completed` over Prefect's event websocket. The phases come
from the flow run's state history and its task runs (server timestamps, same machine), so they
add up to the wall time:

    submit      POST .../background → 202 (auth, rate limit, charge, create the flow run)
    pick-up     run created (Scheduled) → claimed (Pending): event wake-up or runner poll
    start       Pending → Running: process start + imports (subprocess) or hand-over (warm)
    <task>      each task's own run time (remove-background includes `import rembg` and the
                model load in a fresh process)
    gap <task>  time before each task starts: Prefect task orchestration, concurrency slot
    finish      last task end → Completed
    event       Completed → the completion event reaches this process

Then the cost of a fresh process alone, measured in subprocesses: imports, `import rembg`,
and the session load.
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import answers, isolated_home, start_process, stop_process, wait_until_ready  # noqa: E402

_HOME = isolated_home("posegen-e2e-bench-")

import httpx  # noqa: E402

from posegen.api.paths import BASE_PATH as BASE  # noqa: E402

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


def start_runner(
    api: str,
    deployment: str,
    mode: str,
    poll: int,
    log: Path,
    workers: int = 3,
    model: str | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_RUNNER_POLL_FREQUENCY": str(poll),
        "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": deployment,
        "POSEGEN_WARM_WORKERS": str(workers) if mode == "warm" else "0",
        "PYTHONUNBUFFERED": "1",
    }
    if model:
        env["POSEGEN_REMBG_MODEL"] = model
    runner = start_process([sys.executable, "-m", "deployments.serve"], log, env=env)
    wait_until_ready(
        runner,
        lambda: answers(f"{api}/deployments/name/{deployment}", timeout=5),
        what=f"the runner's deployment {deployment}",
        log=log,
        timeout=120,
    )
    return runner


class CompletionEvents:
    """Arrival time (this process's clock) of each pose's completion event, over the websocket."""

    def __init__(self, api: str) -> None:
        import threading

        self.api = api
        self.arrived: dict[str, float] = {}
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(30), "the event subscription never opened"

    def _run(self) -> None:
        import asyncio

        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from posegen.events import EVENT_BACKGROUND_COMPLETED

        async def listen() -> None:
            event_filter = EventFilter(event=EventNameFilter(name=[EVENT_BACKGROUND_COMPLETED]))
            # A new thread does not see the caller's settings context: name the API here.
            with temporary_settings({PREFECT_API_URL: self.api}):
                subscriber = get_events_subscriber(filter=event_filter)
            async with subscriber:
                self._ready.set()
                async for event in subscriber:
                    self.arrived[str(event.payload["poseId"])] = time.time()

        # Ends when the Prefect server stops at the end of the bench.
        with contextlib.suppress(Exception):
            asyncio.run(listen())

    def wait(self, pose_id: str, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while pose_id not in self.arrived:
            assert time.monotonic() < deadline, f"no completion event for pose {pose_id}"
            time.sleep(0.005)
        return self.arrived[pose_id]


def stop_runner(runner: subprocess.Popen[bytes]) -> None:
    stop_process(runner, timeout=30)


def phases(
    api: str, run_id: str, posted: float, accepted: float, completed_event: float
) -> dict[str, float]:
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
        "pick-up": first["PENDING"] - first["SCHEDULED"],
        "start": first["RUNNING"] - first["PENDING"],
    }
    cursor = first["RUNNING"]
    for name in TASK_ORDER:
        start, end = spans[name]
        result[f"gap {name}"] = max(0.0, start - cursor)
        result[name] = end - start
        cursor = end
    result["finish"] = first["COMPLETED"] - cursor
    result["event"] = completed_event - first["COMPLETED"]
    result["compute (tasks)"] = sum(result[name] for name in TASK_ORDER)
    result["Prefect gaps"] = sum(result[f"gap {name}"] for name in TASK_ORDER)
    result["total"] = completed_event - posted
    return result


def run_requests(
    api: str, count: int, deployment: str, events: CompletionEvents
) -> list[dict[str, float]]:
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
        for index in range(count + 1):
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
            arrived = events.wait(str(pose_id))
            if index == 0:
                print(f"   warm-up request: {arrived - posted:.2f} s (not counted)", flush=True)
                continue
            results.append(phases(api, run_id, posted, done, arrived))
            print(f"   run {len(results)}: total {results[-1]['total']:.2f} s", flush=True)
    return results


def run_burst(api: str, count: int, deployment: str, events: CompletionEvents) -> float:
    """`count` changes submitted at once (threads, one request each); seconds from the first
    POST to the last completion event. Also checks the concurrency limit: at most
    `background_change_slots` runs inside their slot (remove-background → composite) at once."""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from posegen.api.app import create_app
    from posegen.auth import create_token
    from posegen.config import get_settings, reset_settings
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.domain.users import create_user
    from posegen.storage import get_storage

    os.environ["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"] = deployment
    # The per-user rate limit would (rightly) refuse one user's burst: spread it over users.
    reset_settings()
    photo = person_png()
    jobs = []
    with session_scope() as session:
        for _ in range(count):
            user = create_user(
                session, f"burst-{uuid.uuid4().hex[:8]}@example.com", opening_credits=100
            )
            pose = import_generation(session, get_storage(), user.id, [photo]).poses[0]
            jobs.append((str(pose.id), create_token(user.id, "USER")))
    body = {"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"}
    with TestClient(create_app()) as client:

        def post(job: tuple[str, str]) -> str:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            pose_id, token = job
            # A pool thread does not see the main thread's settings context: name the API.
            with temporary_settings({PREFECT_API_URL: api}):
                response = client.post(
                    f"{BASE}/poses/{pose_id}/background",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert response.status_code == 202, response.text
            return str(response.json()["flowRunId"])

        started = time.time()
        with ThreadPoolExecutor(max_workers=16) as pool:
            run_ids = list(pool.map(post, jobs))
        submitted = time.time() - started
        last = max(events.wait(pose_id, timeout=900) for pose_id, _ in jobs)
    elapsed = last - started
    print(f"   all {count} completed {elapsed:.2f} s after the first POST", flush=True)
    tasks: list[dict[str, str]] = []
    while True:  # the API pages task runs by 200
        page = httpx.post(
            f"{api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": run_ids}}, "limit": 200, "offset": len(tasks)},
            timeout=30,
        )
        page.raise_for_status()
        tasks += page.json()
        if len(page.json()) < 200:
            break
    inside: dict[str, list[float]] = {}
    for task in tasks:
        name = task["name"].rsplit("-", 1)[0]
        if name == "remove-background":
            inside.setdefault(task["flow_run_id"], [0, 0])[0] = _ts(task["start_time"])
        elif name == "composite":
            inside.setdefault(task["flow_run_id"], [0, 0])[1] = _ts(task["end_time"])
    edges = sorted([(a, 1) for a, _ in inside.values()] + [(b, -1) for _, b in inside.values()])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    slots = get_settings().background_change_slots
    print(f"   {count} submitted in {submitted:.2f} s; all completed {elapsed:.2f} s after the")
    print(f"   first POST ({elapsed / count:.2f} s per change); at most {most} inside the slot")
    print(f"   at once (limit {slots}){'' if most <= slots else '  ** LIMIT EXCEEDED **'}")
    return elapsed


def rembg_p(count: int) -> float:
    """What `rembg p -m u2netp in/ out/` does for `count` such photos (the CLI's own loop:
    one session, `remove(bytes)` per file, PNG written), in this process: the CLI itself needs
    the `rembg[cli]` extra (gradio, fastapi pins) that posegen does not install."""
    from rembg import new_session, remove

    folder = Path(tempfile.mkdtemp(prefix="rembg-p-"))
    (folder / "in").mkdir()
    (folder / "out").mkdir()
    photo = person_png()
    for index in range(count):
        (folder / "in" / f"{index:03}.png").write_bytes(photo)
    started = time.perf_counter()
    session = new_session("u2netp")
    for path in sorted((folder / "in").iterdir()):
        (folder / "out" / path.name).write_bytes(remove(path.read_bytes(), session=session))
    return time.perf_counter() - started


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
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--modes", default="warm,subprocess", help="warm and/or subprocess")
    parser.add_argument(
        "--models", default="", help="segmentation models to compare, e.g. u2netp,selfie"
    )
    parser.add_argument("--poll", type=int, default=1, help="runner poll period, seconds")
    parser.add_argument("--process-rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=50, help="changes at once (warm); 0: skip")
    parser.add_argument(
        "--db", default="postgres", choices=["postgres", "sqlite"], help="Prefect's and posegen's"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from harness import prefect_api

    from posegen.db.migrate import upgrade

    print(f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    with prefect_api(args.db) as api:
        print(f"Prefect API and posegen database on {args.db}")
        upgrade(os.environ["POSEGEN_DATABASE_URL"])
        from posegen.orchestration import ensure_limits_sync

        ensure_limits_sync()
        events = CompletionEvents(api)
        totals: dict[str, float] = {}
        runs = [
            (mode, model)
            for model in (args.models.split(",") if args.models else [""])
            for mode in args.modes.split(",")
        ]
        for mode, model in runs:
            deployment = f"background-change/bench-{uuid.uuid4().hex[:8]}"
            log = _HOME / f"runner-{mode}-{model}.log"
            runner = start_runner(api, deployment, mode, args.poll, log, model=model or None)
            label = f"{mode}, model {model}" if model else mode
            try:
                print(f"\n== {label} (runner poll {args.poll} s): {args.requests} requests")
                results = run_requests(api, args.requests, deployment, events)
                if mode == "warm" and args.burst:
                    print(f"\n== {mode}: {args.burst} changes submitted at once")
                    burst = run_burst(api, args.burst, deployment, events)
            finally:
                stop_runner(runner)
            for name in results[0]:
                print(f"   {name:<26}: {_median([r[name] for r in results])}")
            totals[label] = statistics.median(r["total"] for r in results)
            p50 = totals[label]
            compute = statistics.median(r["compute (tasks)"] for r in results)
            extra = p50 - compute
            print(f"   p50 request → event {p50:.2f} s = compute {compute:.2f} s + {extra:.2f} s")
        if {"warm", "subprocess"} <= totals.keys():
            ratio = totals["subprocess"] / totals["warm"]
            print(f"\nwarm pool vs subprocess per run (p50): {ratio:.1f}x faster")
    if "warm" in args.modes and args.burst:
        reference = rembg_p(args.burst)
        print(f"\n`rembg p` loop on the same {args.burst} photos: {reference:.2f} s")
        print(f"throughput, warm pool through the API vs rembg p: {reference / burst:.2f}x")
    fresh_process_costs(args.process_rounds)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (machine shared with other work)")


if __name__ == "__main__":
    main()
