"""A proxy in front of the moto S3 endpoint that can cut chosen uploads off halfway.

Storage failures worth testing happen on the wire: a PUT that starts, sends part of its body and
loses the connection. The proxy forwards every request to moto unchanged, except PUTs whose path
contains `drop_puts_containing`: of those it sends moto the headers and half the body, then
closes both connections, so moto sees an upload that never finished and the client sees a
connection dropped before any answer — exactly what a network failure mid-write looks like.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

_HOP_BY_HOP = {"host", "expect", "connection", "content-length", "transfer-encoding", "keep-alive"}


class FaultyS3Proxy:
    """Forwards to `upstream`; `drop_puts_containing` selects the uploads to cut off."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        parts = urlsplit(self.upstream)
        self._upstream_address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.drop_puts_containing: str | None = None
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._http.close()

    def should_drop(self, method: str, path: str) -> bool:
        needle = self.drop_puts_containing
        return method == "PUT" and needle is not None and needle in path

    def record_drop(self, path: str) -> None:
        with self._lock:
            self.dropped.append(path)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        kept = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        return self._http.request(method, self.upstream + path, headers=kept, content=body)

    def send_half(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """The request line, the headers (with the full Content-Length) and half the body."""
        head = f"{method} {path} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "expect")
        with socket.create_connection(self._upstream_address, timeout=5) as upstream:
            upstream.sendall(head.encode("latin-1") + b"\r\n" + body[: len(body) // 2])


def _make_handler(proxy: FaultyS3Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._relay()

        do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            """Silent, like the fake BFL server."""

        def _relay(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            if proxy.should_drop(self.command, self.path):
                proxy.record_drop(self.path)
                proxy.send_half(self.command, self.path, headers, body)
                self.close_connection = True  # no answer at all: the client sees a dead socket
                return
            response = proxy.forward(self.command, self.path, headers, body)
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if self.command == "HEAD":
                self.send_header("content-length", response.headers.get("content-length", "0"))
                self.end_headers()
                return
            self.send_header("content-length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

    return Handler


@contextmanager
def faulty_s3(upstream: str) -> Iterator[FaultyS3Proxy]:
    proxy = FaultyS3Proxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
