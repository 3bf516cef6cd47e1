"""End-to-end background-change latency (API request → completion event), split by phase.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/e2e_bench.py [--requests 20] [--poses known,fresh] \\
        [--modes warm,subprocess] [--burst 50] [--db postgres]

What a seller sees on `posegen up`: a Prefect server and posegen's database on PostgreSQL
(bench/harness.py; `--db sqlite` for the test harness), a real `python -m deployments.serve` per
mode — `warm` (background changes in the warm pool, `POSEGEN_WARM_WORKERS=3`) or `subprocess`
(`POSEGEN_WARM_WORKERS=0`: a fresh process per run, runner polling every `--poll` s) — and the
API under uvicorn in its own process, as `posegen up` runs it. The completion is the moment this
process reads `background-change.completed` on the user's `GET /events` stream (SSE), so the
event's whole way (flow process → Prefect server → the API's subscription → SSE) counts.
Sequential solid-colour changes, one unmeasured request first (the pool finishes warming):

    known   the same pose again and again: its mask is stored (issue 16's p50 ≤ 350 ms and
            p95 ≤ 600 ms target)
    fresh   a new 1024x1536 pose each time, segmented with the run's model; after each run the
            bench does the same change itself with bare `rembg.remove` + composite + PNG on the
            same photo (issue 16: p50 ≤ that + 200 ms)

The phases come from the flow run's state history and its task runs (server timestamps, same
machine):

    submit      POST .../background → 202 (auth, rate limit, charge, create the flow run)
    pick-up     run created (Scheduled) → claimed (Pending): event wake-up or runner poll
    start       Pending → Running: process start + imports (subprocess) or hand-over (warm)
    <task>      each task's own run time
    gap <task>  time before each task starts: Prefect task orchestration, concurrency slot
    event       end of the last task (the event is emitted in it) → the event read on /events
    finish      end of the last task → Completed (after the event: the user does not wait)
    orchestration  created → Completed minus the tasks' own time (issue 16: ≤ 150 ms)

Then, optionally, `--burst` changes at once (checks the concurrency limit) against `rembg p`,
and the cost of a fresh process alone, measured in subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    answers,
    free_port,
    isolated_home,
    start_process,
    stop_process,
    wait_until_ready,
)

_HOME = isolated_home("posegen-e2e-bench-")

import httpx  # noqa: E402

from posegen.api.paths import BASE_PATH as BASE  # noqa: E402

BODY = {"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"}
# Issue 16's targets, milliseconds.
KNOWN_P50, KNOWN_P95, FRESH_MARGIN, ORCHESTRATION = 350, 600, 200, 150
_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _ts(value: str | None) -> float:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _ms(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{statistics.median(ms):6.0f} ms [{ms[0]:.0f}-{ms[-1]:.0f}]"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


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
    tree: Path = ROOT,
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
    runner = start_process([sys.executable, "-m", "deployments.serve"], log, env=env, cwd=tree)
    wait_until_ready(
        runner,
        lambda: answers(f"{api}/deployments/name/{deployment}", timeout=5),
        what=f"the runner's deployment {deployment}",
        log=log,
        timeout=120,
    )
    return runner


def start_api(
    prefect: str, deployment: str, log: Path, tree: Path = ROOT
) -> tuple[subprocess.Popen[bytes], str]:
    """The API under uvicorn, as `posegen up` runs it; (process, base URL)."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect,
        "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": deployment,
        "POSEGEN_LOG_LEVEL": "WARNING",
        # One user sends every request: at idle speed the known and fresh rounds together pass
        # the per-user limit of 20 changes a minute, and a 429 is not what this bench measures.
        "POSEGEN_RATE_LIMIT_BACKGROUND_PER_MINUTE": "100000",
    }
    command = [sys.executable, "-m", "uvicorn", "posegen.api.app:app", "--port", str(port)]
    api = start_process(
        [*command, "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"],
        log,
        env=env,
        cwd=tree,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(
        api,
        lambda: answers(f"{base}{BASE}/health", timeout=10),
        what="the API",
        log=log,
        timeout=240,
    )
    return api, base


class SseCompletions:
    """Arrival time (this process's clock) of each pose's completion on the user's /events."""

    def __init__(self, base: str, token: str) -> None:
        self.arrived: dict[str, float] = {}
        self._open = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, args=(base, token), daemon=True)
        self._thread.start()
        assert self._open.wait(30), "GET /events never answered"

    def _read(self, base: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", f"{base}{BASE}/events", headers=headers, timeout=None) as response,
        ):
            assert response.status_code == 200, response.read()
            self._open.set()
            for line in response.iter_lines():
                if self._stop:
                    return
                if not line.startswith("data:"):
                    continue
                data = json.loads(line.removeprefix("data:"))
                if data["event"].endswith("background-change.completed"):
                    self.arrived[str(data["payload"]["poseId"])] = time.time()

    def wait(self, pose_id: str, after: float, timeout: float = 300) -> float:
        """The first arrival for the pose after `after` (a pose may change many times)."""
        deadline = time.monotonic() + timeout
        while self.arrived.get(pose_id, 0.0) < after:
            assert time.monotonic() < deadline, f"no completion event for pose {pose_id}"
            time.sleep(0.002)
        return self.arrived[pose_id]

    def close(self) -> None:
        self._stop = True


class CompletionEvents:
    """Arrival time of each pose's completion event over Prefect's websocket (the burst: one
    SSE stream per user would be fifty)."""

    def __init__(self, api: str) -> None:
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


def wait_final(api: str, run_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
        if state["type"] in _FINAL:
            assert state["type"] == "COMPLETED", state
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never finished")


def phases(
    api: str, run_id: str, posted: float, accepted: float, completed_event: float
) -> dict[str, float]:
    """Seconds per phase of one finished run, from its states and task runs."""
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=10)
    first: dict[str, float] = {}
    for state in sorted(states.json(), key=lambda s: _ts(s["timestamp"])):
        first.setdefault(state["type"], _ts(state["timestamp"]))
    tasks = httpx.post(
        f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}, timeout=10
    ).json()
    spans = sorted(
        (_ts(t["start_time"]), _ts(t["end_time"]), t["name"].rsplit("-", 1)[0]) for t in tasks
    )
    result = {
        "submit": accepted - posted,
        "pick-up": first["PENDING"] - first["SCHEDULED"],
        "start": first["RUNNING"] - first["PENDING"],
    }
    cursor = first["RUNNING"]
    for start, end, name in spans:
        result[f"gap {name}"] = max(0.0, start - cursor)
        result[name] = end - start
        cursor = end
    result["event"] = completed_event - cursor
    result["finish"] = first["COMPLETED"] - cursor
    work = sum(end - start for start, end, _ in spans)
    result["compute (tasks)"] = work
    result["orchestration"] = first["COMPLETED"] - first["SCHEDULED"] - work
    result["total"] = completed_event - posted
    return result


def new_user(credits: int = 10_000) -> tuple[uuid.UUID, str]:
    from posegen.auth import create_token
    from posegen.db.session import session_scope
    from posegen.domain.users import create_user

    with session_scope() as session:
        user = create_user(
            session, f"bench-{uuid.uuid4().hex[:8]}@example.com", opening_credits=credits
        )
        return user.id, create_token(user.id, "USER")


def new_poses(user_id: uuid.UUID, photo: bytes, count: int) -> list[str]:
    from posegen.db.session import session_scope
    from posegen.domain.poses import import_generation
    from posegen.storage import get_storage

    with session_scope() as session:
        generation = import_generation(session, get_storage(), user_id, [photo] * count)
        return [str(pose.id) for pose in generation.poses]


class Side:
    """One stack under test (this tree, or `--baseline`'s): its runner, its API, one user with
    an open /events stream, and the poses it changes."""

    def __init__(
        self, label: str, prefect: str, tree: Path, mode: str, poll: int, model: str | None
    ) -> None:
        self.label, self.prefect = label, prefect
        deployment = f"background-change/bench-{uuid.uuid4().hex[:8]}"
        name = f"{label.replace(' ', '-')}-{mode}-{model or ''}"
        self.runner = start_runner(
            prefect, deployment, mode, poll, _HOME / f"runner-{name}.log", model=model, tree=tree
        )
        self.api, self.base = start_api(prefect, deployment, _HOME / f"api-{name}.log", tree)
        user_id, self.token = new_user()
        self.user_id = user_id
        self.stream = SseCompletions(self.base, self.token)
        self.client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def change(self, pose_id: str) -> dict[str, float]:
        """One change, waited for (event on /events, then the run Completed); its phases."""
        posted = time.time()
        accepted = self.client.post(f"{BASE}/poses/{pose_id}/background", json=BODY)
        done = time.time()
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["flowRunId"]
        arrived = self.stream.wait(pose_id, after=posted)
        wait_final(self.prefect, run_id)
        return phases(self.prefect, run_id, posted, done, arrived)

    def stop(self) -> None:
        self.stream.close()
        self.client.close()
        stop_process(self.api)
        stop_process(self.runner, timeout=30)


def run_requests(
    sides: list[Side], count: int, poses: str, bare: object | None = None
) -> tuple[dict[str, list[dict[str, float]]], list[float]]:
    """`count` measured changes per side, one at a time, the sides taking turns (so a loaded,
    shared machine weighs on both alike), on one pose per side (`known`) or fresh poses
    (`fresh`, each round followed by the bare rembg change of the same photo in this process);
    the phases per side, and the bare times."""
    photo = person_png()
    pose_ids = {
        side.label: new_poses(side.user_id, photo, 1 if poses == "known" else count + 1)
        for side in sides
    }
    results: dict[str, list[dict[str, float]]] = {side.label: [] for side in sides}
    bare_times: list[float] = []
    for index in range(count + 1):
        line = []
        for side in sides if index % 2 == 0 else sides[::-1]:
            result = side.change(pose_ids[side.label][0 if poses == "known" else index])
            if index == 0:
                line.append(f"{side.label} warm-up {result['total'] * 1000:.0f} ms (not counted)")
                continue
            results[side.label].append(result)
            line.append(f"{side.label} {result['total'] * 1000:.0f} ms")
        if bare is not None and index:
            started = time.perf_counter()
            bare.change(photo, None)  # type: ignore[attr-defined]
            bare_times.append(time.perf_counter() - started)
            line.append(f"bare rembg change {bare_times[-1] * 1000:.0f} ms")
        print(f"   {index:2}: " + "; ".join(line), flush=True)
    return results, bare_times


def print_phases(by_side: dict[str, list[dict[str, float]]]) -> None:
    """The phases' medians [min-max], one column per side."""
    names = list(dict.fromkeys(name for results in by_side.values() for r in results for name in r))
    print(f"   {'phase':<26}" + "".join(f"  {label:<24}" for label in by_side))
    for name in names:
        cells = []
        for results in by_side.values():
            values = [r[name] for r in results if name in r]
            cells.append(_ms(values) if values else "-")
        print(f"   {name:<26}" + "".join(f"  {cell:<24}" for cell in cells))


def report(label: str, results: list[dict[str, float]], bare_times: list[float]) -> dict[str, str]:
    """The targets' figures for one side; the verdict lines, for the summary."""
    totals = [r["total"] for r in results]
    p50, p95 = statistics.median(totals) * 1000, percentile(totals, 0.95) * 1000
    overhead = statistics.median(r["orchestration"] for r in results) * 1000
    verdicts = {
        f"{label}: orchestration p50 {overhead:.0f} ms (target <= {ORCHESTRATION})": _met(
            overhead <= ORCHESTRATION
        )
    }
    if bare_times:
        bare = statistics.median(bare_times) * 1000
        verdicts[
            f"{label}: p50 {p50:.0f} ms vs bare rembg change {bare:.0f} ms + {FRESH_MARGIN} "
            f"= {bare + FRESH_MARGIN:.0f} ms"
        ] = _met(p50 <= bare + FRESH_MARGIN)
    else:
        verdicts[
            f"{label}: p50 {p50:.0f} ms (<= {KNOWN_P50}), p95 {p95:.0f} ms (<= {KNOWN_P95})"
        ] = _met(p50 <= KNOWN_P50 and p95 <= KNOWN_P95)
    print(f"   {label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, request → event on /events")
    return verdicts


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_burst(prefect: str, base: str, count: int, events: CompletionEvents) -> float:
    """`count` changes submitted at once (threads, one request each, each its own user: the
    per-user rate limit rightly refuses one user's burst); seconds from the first POST to the
    last completion event. Also checks the concurrency limit: at most `background_change_slots`
    runs inside their slot (the render-change task) at once."""
    from concurrent.futures import ThreadPoolExecutor

    from posegen.config import get_settings

    photo = person_png()
    jobs = []
    for _ in range(count):
        user_id, token = new_user(100)
        jobs.append((new_poses(user_id, photo, 1)[0], token))

    def post(job: tuple[str, str]) -> str:
        pose_id, token = job
        response = httpx.post(
            f"{base}{BASE}/poses/{pose_id}/background",
            json=BODY,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["flowRunId"])

    started = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        run_ids = list(pool.map(post, jobs))
    submitted = time.time() - started
    last = max(events.wait(pose_id, timeout=900) for pose_id, _ in jobs)
    elapsed = last - started
    tasks: list[dict[str, str]] = []
    while True:  # the API pages task runs by 200
        page = httpx.post(
            f"{prefect}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": run_ids}}, "limit": 200, "offset": len(tasks)},
            timeout=30,
        )
        page.raise_for_status()
        tasks += page.json()
        if len(page.json()) < 200:
            break
    edges = []
    for task in tasks:
        if task["name"].rsplit("-", 1)[0] == "render-change":
            edges += [(_ts(task["start_time"]), 1), (_ts(task["end_time"]), -1)]
    at_once = most = 0
    for _, step in sorted(edges):
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
        print(f"   {label:<44}: {_ms(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--poses", default="known,fresh", help="known and/or fresh")
    parser.add_argument("--modes", default="warm", help="warm and/or subprocess")
    parser.add_argument("--models", default="", help="segmentation models, e.g. u2netp,selfie")
    parser.add_argument("--poll", type=int, default=1, help="runner poll period, seconds")
    parser.add_argument("--process-rounds", type=int, default=0, help="fresh-process costs")
    parser.add_argument("--burst", type=int, default=0, help="changes at once (warm); 0: skip")
    parser.add_argument(
        "--baseline",
        help="another source tree (e.g. `git archive main | tar -x -C DIR`) measured in turn "
        "with this one, in the same run",
    )
    parser.add_argument(
        "--db", default="postgres", choices=["postgres", "sqlite"], help="Prefect's and posegen's"
    )
    args = parser.parse_args()

    from harness import prefect_api

    from posegen.db.migrate import upgrade

    print(f"cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
    verdicts: dict[str, str] = {}
    burst = 0.0
    with prefect_api(args.db) as prefect:
        print(f"Prefect API and posegen database on {args.db}")
        upgrade(os.environ["POSEGEN_DATABASE_URL"])
        from posegen.orchestration import ensure_limits_sync

        ensure_limits_sync()
        events = CompletionEvents(prefect) if args.burst else None
        bare = None
        if "fresh" in args.poses:
            from change_bench import RembgSide

            bare = RembgSide()
            bare.change(person_png(), None)  # rembg's first call pays its own warm-up
        for model in args.models.split(",") if args.models else [""]:
            for mode in args.modes.split(","):
                label = f"{mode}, model {model}" if model else mode
                trees = [("this tree", ROOT)]
                if args.baseline:
                    trees.append(("baseline", Path(args.baseline).resolve()))
                sides: list[Side] = []
                try:
                    for name, tree in trees:
                        sides.append(Side(name, prefect, tree, mode, args.poll, model or None))
                    for poses in args.poses.split(","):
                        print(f"\n== {label}, {poses} poses: {args.requests} sequential requests")
                        by_side, bare_times = run_requests(
                            sides, args.requests, poses, bare if poses == "fresh" else None
                        )
                        print_phases(by_side)
                        for side, results in by_side.items():
                            verdicts.update(
                                report(f"{side}, {label}, {poses}", results, bare_times)
                            )
                        if len(by_side) == 2:
                            new, old = (
                                statistics.median(r["total"] for r in results)
                                for results in by_side.values()
                            )
                            print(f"   this tree vs baseline, p50: {old / new:.2f}x faster")
                    if mode == "warm" and args.burst and events is not None:
                        print(f"\n== {label}: {args.burst} changes submitted at once")
                        burst = run_burst(prefect, sides[0].base, args.burst, events)
                finally:
                    for side in sides:
                        side.stop()
    if burst:
        reference = rembg_p(args.burst)
        print(f"\n`rembg p` loop on the same {args.burst} photos: {reference:.2f} s")
        print(f"throughput, warm pool through the API vs rembg p: {reference / burst:.2f}x")
    if args.process_rounds:
        fresh_process_costs(args.process_rounds)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (machine shared with other work)")
    print("\nissue 16 targets:")
    for line, verdict in verdicts.items():
        print(f"   {verdict:<8} {line}")


if __name__ == "__main__":
    main()
