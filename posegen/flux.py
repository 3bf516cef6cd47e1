"""Owns the conversation with the Black Forest Labs FLUX API: submit, poll, download, error mapping.

The protocol (DESIGN.md): ``POST {api_url}/v1/{model}`` with header ``x-key`` answers
``{id, polling_url}``; ``GET polling_url`` until ``status`` is ``Ready`` (``result.sample`` is a
short-lived image URL, downloaded at once) or a terminal failure. The client never retries: a
transient failure raises `FluxTransientError` and the Prefect task around it decides to retry,
so retry policy lives in one place and shows up in the Prefect UI.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from posegen.config import get_settings
from posegen.errors import PermanentError, PosegenError, ServiceUnavailable, TransientError

# BFL's outpainting endpoint: the image plus how many pixels to add on each side (0..2048 each).
EXPAND_MODEL = "flux-pro-1.0-expand"
EXPAND_MAX_ADD = 2048

FLUX_MIN_SIDE = 256
FLUX_MAX_SIDE = 1440
FLUX_STEP = 32

# BFL's scale is 0 (strictest) to 6; 2 is its documented default and suits product photos.
DEFAULT_SAFETY_TOLERANCE = 2

# A FLUX image is at most 1440x1440; even an uncompressed PNG of that is ~6 MB. The cap only stops
# a misbehaving server from filling memory.
_MAX_IMAGE_BYTES = 32 * 1024 * 1024

_MODERATED_STATUSES = frozenset({"Content Moderated", "Request Moderated"})
_FAILED_STATUSES = frozenset({"Error", "Task not found"})

_MODERATED_MESSAGE = (
    "The background prompt was refused by the image model's safety filter; "
    "try a different description."
)


class FluxError(PosegenError):
    """Anything that went wrong talking to FLUX; catch this to handle every FLUX failure at once."""


class FluxTransientError(FluxError, TransientError):
    """Network trouble, a timeout, 429 or 5xx: the same request may well succeed later."""


class FluxModerated(FluxError, PermanentError):
    """BFL's safety filter refused the prompt or the output; the same prompt would fail again."""

    def __init__(self, flux_status: str) -> None:
        super().__init__(_MODERATED_MESSAGE)
        self.flux_status = flux_status


class FluxFailed(FluxError, PermanentError):
    """FLUX answered but cannot make an image for this request (error status, bad request, key)."""


@dataclass(frozen=True, slots=True)
class FluxTask:
    """A submitted generation: its id (for operators) and where to ask for its result."""

    id: str
    polling_url: str


def flux_dimensions(width: int, height: int) -> tuple[int, int]:
    """The FLUX size closest to `width` x `height` with the same aspect.

    FLUX only accepts sides that are multiples of 32 within 256..1440, while poses come in any
    size; the background is later fitted (cover) to the pose, so keeping the aspect matters more
    than the exact pixel count.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    scale = 1.0
    if max(width, height) > FLUX_MAX_SIDE:
        scale = FLUX_MAX_SIDE / max(width, height)
    if min(width, height) * scale < FLUX_MIN_SIDE:
        # Very elongated sizes cannot satisfy both bounds; the clamp below keeps them legal.
        scale = FLUX_MIN_SIDE / min(width, height)
    return _fit_side(width * scale), _fit_side(height * scale)


def _fit_side(side: float) -> int:
    rounded = round(side / FLUX_STEP) * FLUX_STEP
    return max(FLUX_MIN_SIDE, min(FLUX_MAX_SIDE, rounded))


def background_prompt(prompt: str) -> str:
    """Turn a user's short description into a prompt for a background plate.

    The pose's own subject is composited on top, so a generated person, product or caption
    would clash with it; and users write "beach at sunset", not photography direction.
    """
    description = re.sub(r"\s+", " ", prompt).strip().rstrip(".")
    if not description:
        raise ValueError("background prompt is empty")
    return (
        f"Photographic background plate: {description}. "
        "An empty scene with no people, no animals, no text, no logos and no watermark. "
        "Professional product photography backdrop, natural perspective at eye level, "
        "soft even lighting, realistic detail, clear open space in the centre for a subject."
    )


class FluxClient:
    """A small synchronous client for one FLUX model endpoint; one instance per task run."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        model: str = "flux-pro-1.1",
        *,
        poll_interval: float = 0.5,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.model = model
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._api_key = api_key
        # trust_env=False: a stray proxy or .netrc in the worker's environment must not see or
        # alter requests that carry the API key.
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout,
            trust_env=False,
            headers={"accept": "application/json"},
        )

    @classmethod
    def from_settings(cls) -> FluxClient:
        """The client configured by POSEGEN_FLUX_*; refuses early so no credits are taken."""
        settings = get_settings()
        key = settings.flux_api_key.get_secret_value() if settings.flux_api_key else ""
        if not key.strip():
            raise ServiceUnavailable("AI background generation is not configured")
        return cls(
            settings.flux_api_url,
            key.strip(),
            settings.flux_model,
            poll_interval=settings.flux_poll_interval,
            timeout=settings.flux_timeout,
        )

    def __repr__(self) -> str:
        return f"FluxClient(api_url={self.api_url!r}, model={self.model!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def generate(self, prompt: str, width: int, height: int, *, seed: int | None = None) -> bytes:
        """Submit, wait for and download one image, all within `timeout` seconds.

        `prompt` is sent as given (wrap it in `background_prompt` for a background plate); the
        size is brought into FLUX's range with `flux_dimensions`, so the image may differ
        slightly from `width` x `height` but keeps its aspect.
        """
        deadline = time.monotonic() + self.timeout
        flux_width, flux_height = flux_dimensions(width, height)
        task = self.submit(prompt, flux_width, flux_height, seed=seed, deadline=deadline)
        sample_url = self.poll(task, deadline=deadline)
        return self.download(sample_url, deadline=deadline)

    def submit(
        self,
        prompt: str,
        width: int,
        height: int,
        *,
        seed: int | None = None,
        output_format: str = "png",
        safety_tolerance: int = DEFAULT_SAFETY_TOLERANCE,
        deadline: float | None = None,
    ) -> FluxTask:
        """Start a generation; `width`/`height` must already be legal (see `flux_dimensions`)."""
        body: dict[str, Any] = {
            "prompt": prompt,
            "width": width,
            "height": height,
            "safety_tolerance": safety_tolerance,
            "output_format": output_format,
        }
        if seed is not None:
            body["seed"] = seed
        return self._submit(self.model, body, deadline)

    def expand(
        self,
        image_png: bytes,
        *,
        top: int = 0,
        bottom: int = 0,
        left: int = 0,
        right: int = 0,
        prompt: str | None = None,
        seed: int | None = None,
    ) -> bytes:
        """Outpaint: `image_png` with `top`/`bottom`/`left`/`right` pixels added by FLUX
        (`flux-pro-1.0-expand`), submitted, polled and downloaded within `timeout` seconds.

        The answer is an image of the expanded size whose middle is the input; each side adds
        at most `EXPAND_MAX_ADD` pixels (BFL's limit), which the caller keeps to.
        """
        sides = {"top": top, "bottom": bottom, "left": left, "right": right}
        for side, value in sides.items():
            if not 0 <= value <= EXPAND_MAX_ADD:
                raise ValueError(f"{side} must be 0..{EXPAND_MAX_ADD} pixels, got {value}")
        body: dict[str, Any] = {
            "image": base64.b64encode(image_png).decode("ascii"),
            **sides,
            "safety_tolerance": DEFAULT_SAFETY_TOLERANCE,
            "output_format": "png",
        }
        if prompt:
            body["prompt"] = prompt
        if seed is not None:
            body["seed"] = seed
        deadline = time.monotonic() + self.timeout
        task = self._submit(EXPAND_MODEL, body, deadline)
        return self.download(self.poll(task, deadline=deadline), deadline=deadline)

    def _submit(self, model: str, body: dict[str, Any], deadline: float | None) -> FluxTask:
        """POST a task to the `model` endpoint; its id and polling URL."""
        response = self._request(
            "POST", f"{self.api_url}/v1/{model}", deadline, json=body, authenticated=True
        )
        data = self._json(response)
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise FluxFailed("The FLUX API accepted the request but returned no task id.")
        polling_url = data.get("polling_url")
        if not isinstance(polling_url, str) or not polling_url:
            # Older BFL deployments answer without polling_url; get_result is their poll endpoint.
            polling_url = str(httpx.URL(f"{self.api_url}/v1/get_result", params={"id": task_id}))
        return FluxTask(id=task_id, polling_url=polling_url)

    def poll(self, task: FluxTask, *, deadline: float | None = None) -> str:
        """Wait until `task` is Ready and return its sample URL; raise on a terminal status."""
        deadline = self._deadline(deadline)
        while True:
            response = self._request("GET", task.polling_url, deadline, authenticated=True)
            data = self._json(response)
            status = data.get("status")
            if status == "Ready":
                return self._sample_url(task, data)
            if status in _MODERATED_STATUSES:
                raise FluxModerated(str(status))
            if status in _FAILED_STATUSES:
                raise FluxFailed(f"FLUX could not generate the image (task {task.id}: {status}).")
            # Pending and any in-progress status BFL may add: keep waiting.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out()
            time.sleep(min(self.poll_interval, remaining))

    def download(self, url: str, *, deadline: float | None = None) -> bytes:
        """Fetch a Ready sample at once: BFL's delivery URLs expire about 10 minutes after Ready.

        Any failure here is transient: a fresh submission (the task retry) gets a fresh URL.
        The URL is pre-signed, so the API key is not sent to the delivery host.
        """
        deadline = self._deadline(deadline)
        chunks: list[bytes] = []
        size = 0
        try:
            with self._http.stream("GET", url, timeout=self._remaining(deadline)) as response:
                if response.status_code != 200:
                    raise FluxTransientError(
                        f"Downloading the generated image failed (HTTP {response.status_code})."
                    )
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > _MAX_IMAGE_BYTES:
                        raise FluxFailed("The generated image from FLUX is unreasonably large.")
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    chunks.append(chunk)
        except httpx.TransportError as exc:
            raise FluxTransientError(
                f"Downloading the generated image failed ({type(exc).__name__})."
            ) from None
        if size == 0:
            raise FluxTransientError("The generated image downloaded from FLUX was empty.")
        return b"".join(chunks)

    def _request(
        self,
        method: str,
        url: str,
        deadline: float | None,
        *,
        authenticated: bool,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange with the API, mapped onto the error hierarchy."""
        deadline = self._deadline(deadline)
        headers = {"x-key": self._api_key} if authenticated else {}
        try:
            response = self._http.request(
                method, url, json=json, headers=headers, timeout=self._remaining(deadline)
            )
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except httpx.TransportError as exc:
            # `from None`: the chained httpx error carries the request, and with it the key header.
            raise FluxTransientError(
                f"The FLUX API could not be reached ({type(exc).__name__})."
            ) from None
        self._raise_for_status(response)
        return response

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 429 or status >= 500:
            raise FluxTransientError(f"The FLUX API is busy or failing (HTTP {status}).")
        if status in (401, 403):
            raise FluxFailed(f"The FLUX API refused the configured API key (HTTP {status}).")
        if status == 402:
            raise FluxFailed("The FLUX account has run out of credits (HTTP 402).")
        raise FluxFailed(
            f"The FLUX API rejected the request (HTTP {status}): {self._detail(response)}"
        )

    def _detail(self, response: httpx.Response) -> str:
        """A short, key-free excerpt of an error body for operators."""
        try:
            detail: Any = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        return self._redact(str(detail))[:300]

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise FluxFailed(
                f"The FLUX API answered with something that is not JSON (HTTP "
                f"{response.status_code})."
            ) from None
        if not isinstance(data, dict):
            raise FluxFailed("The FLUX API answered with unexpected JSON.")
        return data

    def _sample_url(self, task: FluxTask, data: dict[str, Any]) -> str:
        result = data.get("result")
        sample = result.get("sample") if isinstance(result, dict) else None
        if not isinstance(sample, str) or not sample:
            raise FluxFailed(f"FLUX reported task {task.id} Ready without an image URL.")
        return sample

    def _deadline(self, deadline: float | None) -> float:
        return time.monotonic() + self.timeout if deadline is None else deadline

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        return remaining

    def _timed_out(self) -> FluxTransientError:
        return FluxTransientError(f"FLUX did not deliver an image within {self.timeout:g} s.")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text
