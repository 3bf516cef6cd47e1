"""Driving `posegen up` from a test: free ports, its output read on a thread, values in it."""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from typing import IO

import pytest

STARTUP_TIMEOUT = 80.0


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
