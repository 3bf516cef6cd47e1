"""Driving `posegen up` from a test: free ports, its output read on a thread, values in it."""

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

import pytest

# Generous: a fresh home migrates two databases, and the test machine is often shared.
STARTUP_TIMEOUT = 240.0
STOP_TIMEOUT = 30.0


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all bound at once, so the system cannot hand one out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class StackOutput:
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


def printed_value(output: str, label: str) -> str:
    match = re.search(rf"^\s*{label}\s+(\S+)", output, re.MULTILINE)
    assert match, f"no {label!r} in the output:\n{output}"
    return match.group(1)


def stack_env(home: Path, **extra: str) -> tuple[dict[str, str], int]:
    api_port, prefect_port = free_ports(2)
    env = {
        **os.environ,
        "POSEGEN_HOME": str(home),
        "POSEGEN_API_PORT": str(api_port),
        "POSEGEN_PREFECT_PORT": str(prefect_port),
    }
    for name in ("PREFECT_API_URL", "POSEGEN_DATABASE_URL", "POSEGEN_STORAGE_URL"):
        env.pop(name, None)
    env.update(extra)
    return env, api_port


def start_up(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], StackOutput]:
    up = subprocess.Popen(
        [sys.executable, "-m", "posegen.cli", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    return up, StackOutput(up.stdout)


def stop_up(up: subprocess.Popen[str]) -> None:
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
