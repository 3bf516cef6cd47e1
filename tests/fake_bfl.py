"""Owns the fake Black Forest Labs server (the FLUX protocol over real HTTP) and its fixtures.

Tests exercise `posegen.flux.FluxClient` (and the flows built on it) end to end over sockets, so
headers, JSON, status codes and polling behave as they do against api.bfl.ai, without a key or
network. Select behaviour per test with `fake_bfl.scenario = ...` and `fake_bfl.fail_first(n)`;
every request is recorded in `fake_bfl.requests`.

Scenarios (what the poll endpoint answers for a task submitted under it):
    ready               Ready on the first poll.
    pending_then_ready  Pending for `pending_polls` polls (default 2), then Ready.
    error               Error.
    content_moderated   Content Moderated.
    request_moderated   Request Moderated.
    task_not_found      Task not found.
    rate_limited        every submit answers 429 (with Retry-After).
    server_error        every submit answers 500.

`POST /v1/flux-pro-1.0-expand` (outpainting) is validated like BFL's (`image` base64 of a real
image, `top`/`bottom`/`left`/`right` 0..2048, optional `prompt`, `steps`, `guidance`, ...); its
sample is the input on a canvas grown by those pixels, the new margins continuing the input's edge
pixels (as an outpainting would, so no seam), and the same scenarios apply to it.
`fake_bfl.switch_after(n, scenario)` lets the next `n` submits behave normally and every later
one take `scenario` (a FLUX that starts failing mid-run).

`fake_bfl.hang_seconds = n` makes every submit wait n seconds before answering (a FLUX that
hangs: set it beyond POSEGEN_FLUX_TIMEOUT to exercise the client's timeout).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

Scenario = Literal[
    "ready",
    "pending_then_ready",
    "error",
    "content_moderated",
    "request_moderated",
    "task_not_found",
    "rate_limited",
    "server_error",
]

_TERMINAL_FAILURES: dict[str, str] = {
    "error": "Error",
    "content_moderated": "Content Moderated",
    "request_moderated": "Request Moderated",
    "task_not_found": "Task not found",
}

# BFL's delivery URLs stop working about 10 minutes after the task is Ready.
SAMPLE_TTL_SECONDS = 600.0


def gradient_pixel(x: int, y: int, width: int, height: int) -> tuple[int, int, int]:
    """The exact RGB the fake puts at (x, y) of a width x height sample, for pixel assertions.

    Red rises left to right, green top to bottom, blue is constant: a flipped, cropped or
    resized image is easy to tell from the one FLUX "generated".
    """
    red = x * 255 // max(width - 1, 1)
    green = y * 255 // max(height - 1, 1)
    return red, green, 128


def gradient_image(width: int, height: int, output_format: str = "png") -> bytes:
    """A real encoded image of the requested size, so callers decode what they would from BFL."""
    red_row = bytes(gradient_pixel(x, 0, width, height)[0] for x in range(width))
    green_col = bytes(gradient_pixel(0, y, width, height)[1] for y in range(height))
    red = Image.frombytes("L", (width, 1), red_row).resize(
        (width, height), Image.Resampling.NEAREST
    )
    green = Image.frombytes("L", (1, height), green_col).resize(
        (width, height), Image.Resampling.NEAREST
    )
    blue = Image.new("L", (width, height), 128)
    image = Image.merge("RGB", (red, green, blue))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if output_format == "jpeg" else "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it; headers keys are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    # When it arrived (time.monotonic()): rate-limit tests read the spacing of FLUX calls here.
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class _Task:
    id: str
    scenario: str
    pending_polls: int
    width: int
    height: int
    output_format: str
    body: dict[str, Any]
    polls: int = 0
    ready_at: float | None = None
    # An expand task's result (PNG), made at submit time; generations draw the gradient instead.
    image: bytes | None = None


@dataclass
class _State:
    scenario: str = "ready"
    pending_polls: int = 2
    fail_remaining: int = 0
    fail_status: int = 429
    hang_seconds: float = 0.0
    # `switch_after`: submits left before `switch_scenario` takes over (None: never).
    switch_remaining: int | None = None
    switch_scenario: str = "ready"
    tasks: dict[str, _Task] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)


class FakeBFLServer:
    """A FLUX API look-alike on a free 127.0.0.1 port, served from a daemon thread."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key or f"bfl-test-{secrets.token_hex(12)}"
        self.sample_ttl = SAMPLE_TTL_SECONDS
        self._lock = threading.Lock()
        self._state = _State()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-bfl", daemon=True
        )
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def start(self) -> FakeBFLServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- test controls -------------------------------------------------------------------------

    @property
    def scenario(self) -> str:
        return self._state.scenario

    @scenario.setter
    def scenario(self, value: Scenario) -> None:
        allowed = {"ready", "pending_then_ready", "rate_limited", "server_error"}
        if value not in allowed | _TERMINAL_FAILURES.keys():
            raise ValueError(f"unknown fake BFL scenario {value!r}")
        with self._lock:
            self._state.scenario = value

    @property
    def pending_polls(self) -> int:
        return self._state.pending_polls

    @pending_polls.setter
    def pending_polls(self, value: int) -> None:
        with self._lock:
            self._state.pending_polls = value

    @property
    def hang_seconds(self) -> float:
        return self._state.hang_seconds

    @hang_seconds.setter
    def hang_seconds(self, value: float) -> None:
        with self._lock:
            self._state.hang_seconds = value

    def fail_first(self, n: int, status: int = 429) -> None:
        """Make the next `n` authenticated submits answer `status`, then behave normally."""
        with self._lock:
            self._state.fail_remaining = n
            self._state.fail_status = status

    def switch_after(self, n: int, scenario: Scenario) -> None:
        """The next `n` submits behave as now; every later one is under `scenario`."""
        if scenario not in {"ready", "pending_then_ready", "rate_limited", "server_error"} | (
            _TERMINAL_FAILURES.keys()
        ):
            raise ValueError(f"unknown fake BFL scenario {scenario!r}")
        with self._lock:
            self._state.switch_remaining = n
            self._state.switch_scenario = scenario

    def reset(self) -> None:
        """Back to "ready" with no tasks, failures or records (the `fake_bfl` fixture does this)."""
        with self._lock:
            self._state = _State()
        self.sample_ttl = SAMPLE_TTL_SECONDS

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path starts with `path_prefix` (e.g. "/v1/get_result")."""
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    def task(self, task_id: str) -> _Task | None:
        with self._lock:
            return self._state.tasks.get(task_id)

    # -- protocol ------------------------------------------------------------------------------

    def _handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._state.requests.append(request)
        if request.method == "POST" and request.path.startswith("/v1/"):
            return self._submit(request)
        if request.method == "GET" and request.path == "/v1/get_result":
            return self._get_result(request)
        if request.method == "GET" and request.path.startswith("/samples/"):
            return self._sample(request)
        return _json_response(404, {"detail": "Not Found"})

    def _authorised(self, request: RecordedRequest) -> bool:
        return secrets.compare_digest(request.headers.get("x-key", ""), self.api_key)

    def _submit(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        if not self._authorised(request):
            return _json_response(403, {"detail": "Not authenticated - Invalid Authentication"})
        if self.hang_seconds:
            time.sleep(self.hang_seconds)  # outside the lock: other requests still answer
        with self._lock:
            state = self._state
            if state.fail_remaining > 0:
                state.fail_remaining -= 1
                return _failure(state.fail_status)
            if state.switch_remaining is not None:
                if state.switch_remaining <= 0:
                    state.scenario, state.switch_remaining = state.switch_scenario, None
                else:
                    state.switch_remaining -= 1
            scenario, pending_polls = state.scenario, state.pending_polls
        if scenario == "rate_limited":
            return _failure(429)
        if scenario == "server_error":
            return _failure(500)
        expanding = request.path == f"/v1/{EXPAND_PATH}"
        errors = _validate_expand(request.json) if expanding else _validate(request.json)
        if errors:
            return _json_response(422, {"detail": errors})
        body: dict[str, Any] = request.json
        image = _expanded(body) if expanding else None
        size = Image.open(io.BytesIO(image)).size if image else (body["width"], body["height"])
        task = _Task(
            id=str(uuid.uuid4()),
            scenario=scenario,
            pending_polls=pending_polls,
            width=size[0],
            height=size[1],
            output_format=body.get("output_format") or "jpeg",
            body={k: v for k, v in body.items() if k != "image"},
            image=image,
        )
        with self._lock:
            self._state.tasks[task.id] = task
        return _json_response(
            200, {"id": task.id, "polling_url": f"{self.url}/v1/get_result?id={task.id}"}
        )

    def _get_result(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        if not self._authorised(request):
            return _json_response(403, {"detail": "Not authenticated - Invalid Authentication"})
        task_id = request.query.get("id", "")
        with self._lock:
            task = self._state.tasks.get(task_id)
            if task is not None:
                task.polls += 1
        if task is None or task.scenario == "task_not_found":
            return _json_response(200, {"id": task_id, "status": "Task not found", "result": None})
        if task.scenario in _TERMINAL_FAILURES:
            status = _TERMINAL_FAILURES[task.scenario]
            details = {"Moderation Reasons": ["Derivative Works Filter"]}
            return _json_response(
                200,
                {
                    "id": task.id,
                    "status": status,
                    "result": None,
                    "details": details if "Moderated" in status else None,
                    "progress": None,
                },
            )
        if task.scenario == "pending_then_ready" and task.polls <= task.pending_polls:
            progress = task.polls / (task.pending_polls + 1)
            return _json_response(
                200, {"id": task.id, "status": "Pending", "result": None, "progress": progress}
            )
        with self._lock:
            if task.ready_at is None:
                task.ready_at = time.time()
        extension = "png" if task.output_format == "png" else "jpeg"
        return _json_response(
            200,
            {
                "id": task.id,
                "status": "Ready",
                "result": {
                    "sample": f"{self.url}/samples/{task.id}.{extension}?se=signed",
                    "prompt": task.body.get("prompt"),
                    "seed": task.body.get("seed", 42),
                    "start_time": task.ready_at - 1.0,
                    "end_time": task.ready_at,
                    "duration": 1.0,
                },
                "progress": None,
            },
        )

    def _sample(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        task_id = request.path.removeprefix("/samples/").rsplit(".", 1)[0]
        task = self.task(task_id)
        expired = task is None or task.ready_at is None
        if task is not None and task.ready_at is not None:
            expired = time.time() - task.ready_at > self.sample_ttl
        if task is None or expired:
            return (
                404,
                {"content-type": "application/xml"},
                b"<Error><Code>NoSuchKey</Code></Error>",
            )
        content_type = "image/png" if task.output_format == "png" else "image/jpeg"
        if task.image is not None:
            data = task.image if task.output_format == "png" else _as_jpeg(task.image)
        else:
            data = gradient_image(task.width, task.height, task.output_format)
        return 200, {"content-type": content_type}, data


EXPAND_PATH = "flux-pro-1.0-expand"
EXPAND_MAX_ADD = 2048
SIDES = ("top", "bottom", "left", "right")


def _validate_expand(body: Any) -> list[dict[str, Any]]:
    """FastAPI-style 422 details for `FluxProExpandInputs`, as BFL answers them."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    errors: list[dict[str, Any]] = []
    image = body.get("image")
    if not isinstance(image, str) or not image:
        errors.append({"loc": ["body", "image"], "msg": "Field required", "type": "missing"})
    elif _decoded_image(image) is None:
        errors.append(
            {
                "loc": ["body", "image"],
                "msg": "Image must be a base64-encoded image",
                "type": "value_error",
            }
        )
    for side in SIDES:
        value = body.get(side, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(
                {"loc": ["body", side], "msg": "Input should be an integer", "type": "int_type"}
            )
        elif not 0 <= value <= EXPAND_MAX_ADD:
            errors.append(
                {
                    "loc": ["body", side],
                    "msg": f"Input should be between 0 and {EXPAND_MAX_ADD}",
                    "type": "value_error",
                    "input": value,
                }
            )
    prompt = body.get("prompt", "")
    if prompt is not None and not isinstance(prompt, str):
        errors.append({"loc": ["body", "prompt"], "msg": "Input should be a valid string"})
    steps = body.get("steps", 50)
    if not isinstance(steps, int) or not 15 <= steps <= 50:
        errors.append({"loc": ["body", "steps"], "msg": "Input should be between 15 and 50"})
    guidance = body.get("guidance", 60)
    if not isinstance(guidance, int | float) or not 1.5 <= guidance <= 100:
        errors.append({"loc": ["body", "guidance"], "msg": "Input should be between 1.5 and 100"})
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        errors.append({"loc": ["body", "output_format"], "msg": "Input should be 'jpeg' or 'png'"})
    tolerance = body.get("safety_tolerance", 2)
    if not isinstance(tolerance, int) or not 0 <= tolerance <= 6:
        errors.append({"loc": ["body", "safety_tolerance"], "msg": "Must be between 0 and 6"})
    return errors


def _decoded_image(data: str) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
    except (binascii.Error, ValueError, OSError):
        return None
    return image


# The fake's "generated" margins: the input's edge pixels carried outwards and blurred more the
# further they are from it (fully blurred past this many pixels), like a soft continuation.
_EXPAND_BLUR = 16.0


def _expanded(body: dict[str, Any]) -> bytes:
    """The input on a canvas grown by the requested sides, the new pixels continuing the input's
    edges, softly (an outpainting with no idea but the edges): a real image of the expanded size
    whose middle is the input unchanged and whose margins join it without a line."""
    from PIL import ImageFilter

    image = _decoded_image(body["image"])
    assert image is not None
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    top, bottom, left, right = (int(body.get(side, 0)) for side in SIDES)
    grown = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    blurred = np.asarray(
        Image.fromarray(grown, "RGB").filter(ImageFilter.GaussianBlur(_EXPAND_BLUR)),
        dtype=np.float32,
    )
    ys = np.arange(grown.shape[0], dtype=np.float32)[:, None]
    xs = np.arange(grown.shape[1], dtype=np.float32)[None, :]
    dy = np.maximum(np.maximum(top - ys, ys - (top + height - 1)), 0)
    dx = np.maximum(np.maximum(left - xs, xs - (left + width - 1)), 0)
    alpha = np.clip(np.maximum(dx, dy) / _EXPAND_BLUR, 0.0, 1.0)[..., None]
    mixed = grown.astype(np.float32) * (1 - alpha) + blurred * alpha
    buffer = io.BytesIO()
    # compress_level=1: a test fake need not squeeze bytes, and level 6 costs ~1 s per answer.
    Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), "RGB").save(
        buffer, "PNG", compress_level=1
    )
    return buffer.getvalue()


def _as_jpeg(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _validate(body: Any) -> list[dict[str, Any]]:
    """FastAPI-style 422 details, as BFL answers for an out-of-range or misaligned size."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    errors: list[dict[str, Any]] = []
    if not isinstance(body.get("prompt"), str):
        errors.append({"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"})
    for name in ("width", "height"):
        value = body.get(name, 1024)
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(
                {"loc": ["body", name], "msg": "Input should be an integer", "type": "int_type"}
            )
        elif not 256 <= value <= 1440 or value % 32:
            errors.append(
                {
                    "loc": ["body", name],
                    "msg": "Value must be a multiple of 32 between 256 and 1440",
                    "type": "value_error",
                    "input": value,
                }
            )
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        errors.append({"loc": ["body", "output_format"], "msg": "Input should be 'jpeg' or 'png'"})
    tolerance = body.get("safety_tolerance", 2)
    if not isinstance(tolerance, int) or not 0 <= tolerance <= 6:
        errors.append({"loc": ["body", "safety_tolerance"], "msg": "Must be between 0 and 6"})
    return errors


def _failure(status: int) -> tuple[int, dict[str, str], bytes]:
    if status == 429:
        status_code, headers, body = _json_response(
            429, {"detail": "You have exceeded the rate limit. Please retry later."}
        )
        return status_code, {**headers, "retry-after": "1"}, body
    return _json_response(status, {"detail": "Internal Server Error"})


def _json_response(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(payload).encode()


def _make_handler(server: FakeBFLServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; Nagle would delay each poll by ~40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: pytest output should show test failures, not access logs."""

        def _dispatch(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                json=payload,
            )
            status, headers, body = server._handle(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="session")
def fake_bfl_server() -> Iterator[FakeBFLServer]:
    """One fake BFL server per test session (starting one is cheap, but ports are not free)."""
    server = FakeBFLServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_bfl(fake_bfl_server: FakeBFLServer) -> Iterator[FakeBFLServer]:
    """The session's fake BFL server, reset to scenario "ready" with no records for this test."""
    fake_bfl_server.reset()
    yield fake_bfl_server
    fake_bfl_server.reset()
