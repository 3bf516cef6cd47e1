"""`posegen up` end to end: it gets ready, serves a background change through the API, and a
Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from posegen.demo import DEMO_USER_EMAIL
from posegen.stack import process_tree, still_running

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 80.0
CHANGE_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def _free_ports(count: int) -> list[int]:
    """Distinct free ports: all bound at once, so the system cannot hand one out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _Output:
    """The child's stdout, read on a thread so a full pipe never blocks it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return "\n".join(self.lines)
        pytest.fail(f"no {text!r} from `posegen up` within {timeout:.0f} s:\n{self.text()}")

    def text(self) -> str:
        return "\n".join(self.lines[-60:])


def _value(output: str, label: str) -> str:
    match = re.search(rf"^\s*{label}\s+(\S+)", output, re.MULTILINE)
    assert match, f"no {label!r} in the output:\n{output}"
    return match.group(1)


def test_up_serves_a_background_change_and_ctrl_c_stops_every_process(
    rembg_warm: None, tmp_path: Path
) -> None:
    api_port, prefect_port = _free_ports(2)
    env = {
        **os.environ,
        "POSEGEN_HOME": str(tmp_path / "home"),
        "POSEGEN_API_PORT": str(api_port),
        "POSEGEN_PREFECT_PORT": str(prefect_port),
    }
    for name in ("PREFECT_API_URL", "POSEGEN_DATABASE_URL", "POSEGEN_STORAGE_URL"):
        env.pop(name, None)
    up = subprocess.Popen(
        [sys.executable, "-m", "posegen.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    output = _Output(up.stdout)
    try:
        printed = output.wait_for("Ctrl-C stops everything", STARTUP_TIMEOUT)
        assert "posegen is ready" in printed
        token, pose_id = _value(printed, "user token"), _value(printed, "demo pose")
        base = f"http://127.0.0.1:{api_port}/api/apps/pose-generator"
        headers = {"Authorization": f"Bearer {token}"}

        accepted = httpx.post(
            f"{base}/poses/{pose_id}/background",
            json={"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"},
            headers=headers,
            timeout=30,
        )
        assert accepted.status_code == 202, accepted.text
        pose = _wait_until_changed(f"{base}/poses/{pose_id}", headers, output)
        assert pose["backgroundColor"] == "#1E90FF"
        assert pose["imageUrl"] != pose["originalImageUrl"]

        # The printed sign-in link opens the web app as the demo user, once.
        link = _value(printed, "user sign-in")
        with httpx.Client(timeout=30) as browser:
            assert browser.get(link, follow_redirects=False).status_code == 303
            page = browser.get(_value(printed, "web app"))
        assert page.status_code == 200
        assert "Your generations" in page.text
        assert DEMO_USER_EMAIL in page.text
        assert httpx.get(link, follow_redirects=False, timeout=30).status_code == 401

        tree = process_tree(up.pid)
        assert len(tree) >= 3, f"expected server, runner and API below `posegen up`: {tree}"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=STOP_TIMEOUT) == 0, output.text()
        assert still_running(tree) == {}, f"left running: {still_running(tree)}"
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


def _wait_until_changed(url: str, headers: dict[str, str], output: _Output) -> dict[str, object]:
    deadline = time.monotonic() + CHANGE_TIMEOUT
    pose: dict[str, object] = {}
    while time.monotonic() < deadline:
        pose = httpx.get(url, headers=headers, timeout=10).json()
        if pose.get("status") == "failed":
            pytest.fail(f"the background change failed: {pose.get('errorMessage')}")
        if pose.get("status") == "ready" and pose.get("backgroundChanged"):
            return pose
        time.sleep(0.25)
    pytest.fail(f"pose not changed within {CHANGE_TIMEOUT:.0f} s: {pose}\n{output.text()}")
