"""Testing Server-Sent Events for real: the API on a uvicorn server and a reading client thread.

TestClient buffers a streamed response until it ends, so an endless SSE stream needs a real
server and a client that reads as bytes arrive.
"""

from __future__ import annotations

import contextvars
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


@dataclass
class Message:
    """One SSE message (`comment` set for a `: ...` line such as the keepalive)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.data)


@contextmanager
def serve_api(app: FastAPI) -> Iterator[str]:
    """Run `app` on a free loopback port in a thread; yields its base URL.

    The thread runs in a copy of this context, so Prefect's test-server settings (a settings
    context, not only environment variables) apply inside the app too.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(server.run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class EventStream:
    """An open SSE response read by a background thread into a queue of messages."""

    response: httpx.Response
    _client: httpx.Client
    _messages: queue.Queue[Message] = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls, url: str, headers: dict[str, str]) -> EventStream:
        """Returns once the response headers arrived, i.e. once the API has subscribed."""
        client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
        stream = cls(response, client)
        if response.status_code == 200:
            stream._thread = threading.Thread(target=stream._read, daemon=True)
            stream._thread.start()
        return stream

    def _read(self) -> None:
        current = Message()
        try:
            for line in self.response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if current != Message():
                        self._messages.put(current)
                    current = Message()
                elif line.startswith(":"):
                    self._messages.put(Message(comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        current.data = f"{current.data}\n{value}" if current.data else value
                    elif name in ("id", "event"):
                        setattr(current, name, value)
        except (httpx.HTTPError, RuntimeError):
            return  # closed under us by close()

    def events(self, count: int, timeout: float = 20.0) -> list[Message]:
        """The next `count` event messages (keepalives skipped); fewer if time runs out."""
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and (message := self._next(deadline)) is not None:
            if message.comment is None:
                found.append(message)
        return found

    def next_comments(self, text: str, count: int, timeout: float = 30.0) -> list[str]:
        """The next `count` comments equal to `text`, however long they take up to `timeout`
        (a deadline for a broken stream, not a window the assertion depends on)."""
        found: list[str] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and (message := self._next(deadline)) is not None:
            if message.comment == text:
                found.append(message.comment)
        return found

    def _next(self, deadline: float) -> Message | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return self._messages.get(timeout=remaining)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop.set()
        self.response.close()
        self._client.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
