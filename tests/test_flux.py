"""The FLUX client against the fake BFL server over real HTTP: every protocol path, every error."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from posegen.config import reset_settings
from posegen.errors import PermanentError, ServiceUnavailable, TransientError
from posegen.flux import (
    FluxClient,
    FluxError,
    FluxFailed,
    FluxModerated,
    FluxTask,
    FluxTransientError,
    background_prompt,
    flux_dimensions,
)
from tests.fake_bfl import FakeBFLServer, gradient_pixel


@pytest.fixture
def flux(fake_bfl: FakeBFLServer) -> Iterator[FluxClient]:
    with FluxClient(fake_bfl.url, fake_bfl.api_key, poll_interval=0.01, timeout=10) as client:
        yield client


def _errors_mentioning_nothing_secret(exc: BaseException, key: str) -> None:
    for text in (str(exc), repr(exc), str(getattr(exc, "message", ""))):
        assert key not in text
    assert exc.__cause__ is None or key not in repr(exc.__cause__)


def test_generate_returns_the_ready_sample_of_the_requested_size(
    fake_bfl: FakeBFLServer, flux: FluxClient
) -> None:
    data = flux.generate("a beach at sunset", 640, 960, seed=7)

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (640, 960)
    for x, y in [(0, 0), (639, 0), (320, 480), (0, 959), (639, 959)]:
        assert image.getpixel((x, y)) == gradient_pixel(x, y, 640, 960)

    (submit,) = fake_bfl.requests_to("/v1/", method="POST")
    assert submit.path == "/v1/flux-pro-1.1"
    assert submit.headers["x-key"] == fake_bfl.api_key
    assert submit.json == {
        "prompt": "a beach at sunset",
        "width": 640,
        "height": 960,
        "seed": 7,
        "safety_tolerance": 2,
        "output_format": "png",
    }
    polls = fake_bfl.requests_to("/v1/get_result")
    assert len(polls) == 1
    assert polls[0].headers["x-key"] == fake_bfl.api_key
    (download,) = fake_bfl.requests_to("/samples/")
    assert "x-key" not in download.headers  # delivery URLs are pre-signed; the key stays home


def test_generate_brings_any_size_into_flux_range(
    fake_bfl: FakeBFLServer, flux: FluxClient
) -> None:
    data = flux.generate("studio", 3000, 2000)

    assert Image.open(io.BytesIO(data)).size == (1440, 960)
    (submit,) = fake_bfl.requests_to("/v1/", method="POST")
    assert (submit.json["width"], submit.json["height"]) == (1440, 960)
    assert "seed" not in submit.json


def test_generate_keeps_polling_while_pending(fake_bfl: FakeBFLServer, flux: FluxClient) -> None:
    fake_bfl.scenario = "pending_then_ready"
    fake_bfl.pending_polls = 3

    data = flux.generate("forest", 512, 512)

    assert Image.open(io.BytesIO(data)).size == (512, 512)
    assert len(fake_bfl.requests_to("/v1/get_result")) == 4


def test_submit_without_polling_url_falls_back_to_get_result(fake_bfl: FakeBFLServer) -> None:
    def no_polling_url(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "abc"})
        return httpx.Response(200, json={"status": "Ready", "result": {"sample": "x"}})

    client = FluxClient("https://api.example", "k", transport=httpx.MockTransport(no_polling_url))
    task = client.submit("p", 512, 512)
    assert task == FluxTask(id="abc", polling_url="https://api.example/v1/get_result?id=abc")


@pytest.mark.parametrize("scenario", ["content_moderated", "request_moderated"])
def test_moderation_is_permanent_with_a_message_users_understand(
    fake_bfl: FakeBFLServer, flux: FluxClient, scenario: str
) -> None:
    fake_bfl.scenario = scenario  # type: ignore[assignment]

    with pytest.raises(FluxModerated) as caught:
        flux.generate("something refused", 512, 512)

    assert isinstance(caught.value, PermanentError)
    assert caught.value.message == (
        "The background prompt was refused by the image model's safety filter; "
        "try a different description."
    )
    assert caught.value.flux_status in ("Content Moderated", "Request Moderated")
    assert not fake_bfl.requests_to("/samples/")


@pytest.mark.parametrize(
    ("scenario", "status"), [("error", "Error"), ("task_not_found", "Task not found")]
)
def test_failed_task_is_permanent(
    fake_bfl: FakeBFLServer, flux: FluxClient, scenario: str, status: str
) -> None:
    fake_bfl.scenario = scenario  # type: ignore[assignment]

    with pytest.raises(FluxFailed, match=status) as caught:
        flux.generate("anything", 512, 512)

    assert isinstance(caught.value, PermanentError)
    assert not isinstance(caught.value, TransientError)


@pytest.mark.parametrize(("scenario", "status"), [("rate_limited", 429), ("server_error", 500)])
def test_rate_limit_and_server_errors_are_transient(
    fake_bfl: FakeBFLServer, flux: FluxClient, scenario: str, status: int
) -> None:
    fake_bfl.scenario = scenario  # type: ignore[assignment]

    with pytest.raises(FluxTransientError, match=str(status)) as caught:
        flux.generate("anything", 512, 512)

    assert isinstance(caught.value, TransientError)
    assert not isinstance(caught.value, PermanentError)
    # No hidden retry loop: the task's retries decide, so exactly one submit went out.
    assert len(fake_bfl.requests_to("/v1/", method="POST")) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_a_retry_after_transient_submit_failures_succeeds(
    fake_bfl: FakeBFLServer, flux: FluxClient, status: int
) -> None:
    fake_bfl.fail_first(2, status=status)

    for _attempt in range(2):
        with pytest.raises(FluxTransientError):
            flux.generate("retry me", 512, 512)
    data = flux.generate("retry me", 512, 512)

    assert Image.open(io.BytesIO(data)).size == (512, 512)


def test_network_error_is_transient() -> None:
    client = FluxClient(_closed_port_url(), "key", timeout=5)
    with client, pytest.raises(FluxTransientError, match="could not be reached"):
        client.generate("p", 512, 512)


def test_overall_deadline_expiry_is_transient(fake_bfl: FakeBFLServer) -> None:
    fake_bfl.scenario = "pending_then_ready"
    fake_bfl.pending_polls = 10_000

    client = FluxClient(fake_bfl.url, fake_bfl.api_key, poll_interval=0.05, timeout=0.3)
    with client, pytest.raises(FluxTransientError, match=r"within 0\.3 s"):
        client.generate("slow", 512, 512)


def test_expired_sample_url_is_transient(fake_bfl: FakeBFLServer, flux: FluxClient) -> None:
    fake_bfl.sample_ttl = -1  # already older than BFL's ~10 minute delivery window

    with pytest.raises(FluxTransientError, match="404"):
        flux.generate("late", 512, 512)


def test_wrong_key_is_permanent_and_never_echoed(fake_bfl: FakeBFLServer) -> None:
    wrong = "sk-wrong-" + fake_bfl.api_key[::-1]

    with (
        FluxClient(fake_bfl.url, wrong) as client,
        pytest.raises(FluxFailed, match="403") as caught,
    ):
        client.generate("p", 512, 512)

    assert isinstance(caught.value, PermanentError)
    _errors_mentioning_nothing_secret(caught.value, wrong)


def test_invalid_size_is_rejected_by_the_server_as_permanent(
    fake_bfl: FakeBFLServer, flux: FluxClient
) -> None:
    with pytest.raises(FluxFailed, match="422"):
        flux.submit("p", 500, 512)


@pytest.mark.parametrize(
    "scenario",
    ["ready", "error", "content_moderated", "task_not_found", "rate_limited", "server_error"],
)
def test_the_key_never_appears_in_errors(fake_bfl: FakeBFLServer, scenario: str) -> None:
    fake_bfl.scenario = scenario  # type: ignore[assignment]
    client = FluxClient(fake_bfl.url, fake_bfl.api_key, poll_interval=0.01, timeout=5)
    assert fake_bfl.api_key not in repr(client)
    if scenario == "ready":
        fake_bfl.sample_ttl = -1

    with client, pytest.raises(FluxError) as caught:
        client.generate("p", 512, 512)

    _errors_mentioning_nothing_secret(caught.value, fake_bfl.api_key)


def test_error_detail_echoing_the_key_is_redacted() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"detail": f"bad key {request.headers['x-key']}"})

    client = FluxClient("https://api.example", "sekrit-key", transport=httpx.MockTransport(echo))
    with pytest.raises(FluxFailed) as caught:
        client.submit("p", 512, 512)
    assert "sekrit-key" not in str(caught.value)
    assert "***" in str(caught.value)


def test_from_settings_refuses_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSEGEN_FLUX_API_KEY", raising=False)
    reset_settings()
    try:
        with pytest.raises(ServiceUnavailable, match="not configured"):
            FluxClient.from_settings()
    finally:
        reset_settings()


def test_from_settings_uses_the_posegen_flux_settings(
    fake_bfl: FakeBFLServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSEGEN_FLUX_API_URL", fake_bfl.url + "/")
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("POSEGEN_FLUX_MODEL", "flux-dev")
    monkeypatch.setenv("POSEGEN_FLUX_POLL_INTERVAL", "0.01")
    reset_settings()
    try:
        with FluxClient.from_settings() as client:
            client.generate("p", 256, 256)
    finally:
        reset_settings()
    assert [r.path for r in fake_bfl.requests_to("/v1/", method="POST")] == ["/v1/flux-dev"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 1024), (1024, 1024)),
        ((1080, 1920), (800, 1440)),
        ((1920, 1080), (1440, 800)),
        ((2480, 3508), (1024, 1440)),
        ((100, 150), (256, 384)),
        ((1000, 1000), (992, 992)),
        ((1017, 1500), (992, 1440)),
        ((1017, 1400), (1024, 1408)),
        ((5000, 100), (1440, 256)),
        ((256, 1440), (256, 1440)),
    ],
)
def test_flux_dimensions_keeps_aspect_within_range(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    width, height = flux_dimensions(*size)

    assert (width, height) == expected
    assert width % 32 == 0 and height % 32 == 0
    assert min(width, height) >= 256 and max(width, height) <= 1440


def test_flux_dimensions_is_idempotent_on_legal_sizes() -> None:
    for width in range(256, 1441, 32):
        assert flux_dimensions(width, 1440 + 256 - width) == (width, 1440 + 256 - width)


def test_flux_dimensions_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError):
        flux_dimensions(0, 100)


def test_background_prompt_asks_for_an_empty_photographic_backdrop() -> None:
    prompt = background_prompt("  a sunny   beach with palm trees.  ")

    assert "a sunny beach with palm trees" in prompt
    lowered = prompt.lower()
    for phrase in ("no people", "no text", "photograph", "background"):
        assert phrase in lowered
    assert len(prompt) < 1000


def test_background_prompt_rejects_blank_input() -> None:
    with pytest.raises(ValueError):
        background_prompt("   ")


def _closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens, so connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
