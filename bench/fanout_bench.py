"""Event fan-out: 1,000 listeners (SSE and WebSocket, 250 users) on one API process (issue 13).

One uvicorn API process on a Prefect server backed by PostgreSQL; the bench opens the listeners,
then emits `posegen.background-change.completed` events with the flows' own emitter
(`posegen.events.emit_background_change_completed`), spread over the users, at a bounded rate.
It checks that every event reaches exactly its own user's listeners and no other, and reports
emit → delivery latency (the event's `occurred` to its arrival, one clock), the API process's
memory per listener (RSS with listeners minus RSS without), and how many TCP connections the
Prefect server holds before and with the listeners.

`--code DIR` runs the API from another checkout (e.g. `git archive <commit> | tar -x -C DIR`)
to measure the code before the fan-out: it had no WebSocket channel, so use `--ws 0` there.
Traffic goes to loopback only.

    python -m bench.fanout_bench --users 250 --sse 500 --ws 500 --events 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import websockets

from bench.harness import (
    ROOT,
    answers,
    free_port,
    isolated_home,
    prefect_api,
    start_process,
    stop_process,
    wait_until_ready,
)

BASE = "/api/apps/pose-generator"


@dataclass
class Received:
    """What one listener got: event id → arrival time (time.time())."""

    user: int
    kind: str
    events: dict[str, float] = field(default_factory=dict)


def _established(port: int) -> int:
    """ESTABLISHED TCP connections whose local port is `port` (the server's side), from /proc."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                local_port = int(parts[1].rsplit(":", 1)[1], 16)
                if local_port == port and parts[3] == "01":
                    count += 1
    return count


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _sse(url: str, token: str, received: Received, ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200, response.status_code
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                received.events[data["payload"]["requestId"]] = time.time()


async def _ws(
    url: str, token: str, user_id: uuid.UUID, received: Received, ready: asyncio.Event
) -> None:
    async with websockets.connect(f"{url}?token={token}", open_timeout=60, max_queue=None) as ws:
        channel = f"pose-generator:{user_id}"
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        answer = json.loads(await ws.recv())
        assert answer["type"] == "subscribed", answer
        ready.set()
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "background_change_complete":
                received.events[message["requestId"]] = time.time()


async def _run(args: argparse.Namespace, api: str, users: list[tuple[uuid.UUID, str]]) -> dict:
    listeners: list[Received] = []
    tasks: list[asyncio.Task[None]] = []
    readies: list[asyncio.Event] = []
    ws_base = api.replace("http://", "ws://") + f"{BASE}/ws"
    opened = time.monotonic()
    for i in range(args.sse + args.ws):
        user = i % len(users)
        kind = "sse" if i < args.sse else "ws"
        received = Received(user, kind)
        ready = asyncio.Event()
        user_id, token = users[user]
        if kind == "sse":
            coroutine = _sse(f"{api}{BASE}/events", token, received, ready)
        else:
            coroutine = _ws(ws_base, token, user_id, received, ready)
        listeners.append(received)
        readies.append(ready)
        tasks.append(asyncio.create_task(coroutine))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # a bounded connection rate
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=300)
    open_seconds = time.monotonic() - opened
    failed = [t for t in tasks if t.done()]
    if failed:
        failed[0].result()
    return {"listeners": listeners, "tasks": tasks, "open_seconds": open_seconds}


def _emit(
    args: argparse.Namespace, users: list[tuple[uuid.UUID, str]]
) -> dict[str, tuple[int, float]]:
    """Emit the events at `args.rate` per second; request id → (user index, occurred epoch)."""
    from posegen.events import emit_background_change_completed

    sent: dict[str, tuple[int, float]] = {}
    interval = 1.0 / args.rate
    start = time.monotonic()
    for n in range(args.events):
        user = (n * 7) % len(users)
        request_id = uuid.uuid4()
        before = time.time()
        emit_background_change_completed(
            pose_id=uuid.uuid4(),
            user_id=users[user][0],
            generation_id=uuid.uuid4(),
            request_id=request_id,
            image_url=f"/api/apps/pose-generator/files/poses/{n}.png",
            image_key=f"poses/{n}.png",
            background_mode="solid_color",
            credit_charged=10,
        )
        sent[str(request_id)] = (user, before)
        delay = start + (n + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=250)
    parser.add_argument("--sse", type=int, default=500)
    parser.add_argument("--ws", type=int, default=500)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events emitted per second")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout the API runs from")
    args = parser.parse_args()

    home = isolated_home("posegen-fanout-")
    with prefect_api("postgres") as prefect_url:
        from posegen.auth import create_token
        from posegen.config import reset_settings
        from posegen.db.migrate import upgrade
        from posegen.db.session import session_scope
        from posegen.domain.users import create_user

        reset_settings()
        db_url = os.environ["POSEGEN_DATABASE_URL"]
        upgrade(db_url)
        users = []
        with session_scope(db_url) as session:
            for n in range(args.users):
                user = create_user(session, f"listener-{n}@example.com", opening_credits=0)
                users.append((user.id, create_token(user.id, "USER")))
        prefect_port = urlsplit(prefect_url).port
        assert prefect_port is not None

        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(args.code), "POSEGEN_EVENTS_HEARTBEAT_SECONDS": "15"}
        log = home / "api.log"
        command = [sys.executable, "-m", "uvicorn", "posegen.api.app:app", "--port", str(port)]
        command += ["--host", "127.0.0.1", "--log-level", "warning", "--app-dir", str(args.code)]
        server = start_process(command, log, env=env)
        api = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(
                server, lambda: answers(f"{api}{BASE}/health"), what="the API", log=log, timeout=120
            )
            time.sleep(2)
            connections_before = _established(prefect_port)
            rss_before = _rss_mib(server.pid)
            loop = asyncio.new_event_loop()
            opened = loop.run_until_complete(_run(args, api, users))
            time.sleep(3)  # the listeners settle (SSE streams subscribed, sockets subscribed)
            connections_with = _established(prefect_port)
            rss_with = _rss_mib(server.pid)

            emit_started = time.monotonic()
            # Emitted from a thread while the listeners' loop keeps reading.
            sent = loop.run_until_complete(asyncio.to_thread(_emit, args, users))
            emit_seconds = time.monotonic() - emit_started
            loop.run_until_complete(asyncio.sleep(10))  # late deliveries
            listeners: list[Received] = opened["listeners"]
            for task in opened["tasks"]:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*opened["tasks"], return_exceptions=True))
            loop.close()
        finally:
            stop_process(server)

    by_user: dict[int, set[str]] = defaultdict(set)
    for request_id, (user, _at) in sent.items():
        by_user[user].add(request_id)
    exact = wrong = missing = 0
    latencies: dict[str, list[float]] = {"sse": [], "ws": []}
    for listener in listeners:
        expected = by_user[listener.user]
        got = set(listener.events)
        wrong += len(got - expected)
        missing += len(expected - got)
        exact += got == expected
        for request_id in got & expected:
            latencies[listener.kind].append(listener.events[request_id] - sent[request_id][1])
    every = latencies["sse"] + latencies["ws"]
    total = len(listeners)
    expected_total = sum(len(by_user[x.user]) for x in listeners)
    per_listener = 1024 * (rss_with - rss_before) / total
    lines = [
        f"listeners: {args.sse} SSE + {args.ws} WebSocket over {args.users} users, "
        f"opened in {opened['open_seconds']:.1f} s",
        f"events emitted: {len(sent)} in {emit_seconds:.1f} s; "
        f"deliveries expected: {expected_total}",
        f"listeners with exactly their own user's events: {exact}/{total}; "
        f"foreign deliveries: {wrong}; missing: {missing}",
    ]
    for name, values in (("all", every), *latencies.items()):
        if values:
            lines.append(
                f"emit -> delivery ({name}, n={len(values)}): "
                f"p50 {1000 * statistics.median(values):.0f} ms, "
                f"p99 {1000 * _percentile(values, 0.99):.0f} ms, max {1000 * max(values):.0f} ms"
            )
    lines.append(
        f"API RSS: {rss_before:.1f} MiB idle, {rss_with:.1f} MiB with listeners: "
        f"{per_listener:.0f} KiB per listener"
    )
    lines.append(
        f"Prefect server TCP connections: {connections_before} before listeners, "
        f"{connections_with} with {total} listeners"
    )
    print("\n".join(lines))
    print(f"(measured at {datetime.now().isoformat(timespec='seconds')})")


if __name__ == "__main__":
    main()
