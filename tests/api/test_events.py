"""GET /events: a user's own posegen events, live from the session's Prefect server, over SSE.

The API runs on a real uvicorn server (tests.sse) and events are emitted with Prefect's own
`emit_event`, exactly as the flows emit them.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from prefect.events import Event, emit_event

from posegen.api import event_stream
from posegen.api.app import create_app
from posegen.config import reset_settings
from posegen.events import EVENT_BACKGROUND_COMPLETED, pose_resource, user_related
from tests.api.conftest import BASE, Account
from tests.sse import EventStream, serve_api

EVENTS = f"{BASE}/events"
HEARTBEAT_SECONDS = 0.5


@pytest.fixture
def api_url(
    prefect_api: str, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("POSEGEN_EVENTS_HEARTBEAT_SECONDS", str(HEARTBEAT_SECONDS))
    reset_settings()
    with serve_api(create_app()) as url:
        yield url


@pytest.fixture
def open_stream(api_url: str) -> Iterator[Callable[..., EventStream]]:
    streams: list[EventStream] = []

    def open_(account: Account, last_event_id: str | None = None) -> EventStream:
        headers = dict(account.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        stream = EventStream.open(api_url + EVENTS, headers)
        assert stream.response.status_code == 200, stream.response.read()
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def _completed(user: Account, **payload: object) -> Event:
    pose_id = uuid.uuid4()
    event = emit_event(
        event=EVENT_BACKGROUND_COMPLETED,
        resource=pose_resource(pose_id),
        related=[user_related(user.id)],
        payload={"poseId": str(pose_id), **payload},
    )
    assert event is not None
    return event


def test_user_receives_own_events_with_ids_and_never_anothers(
    open_stream: Callable[..., EventStream], new_account: Callable[..., Account]
) -> None:
    alice, bob = new_account(), new_account()
    alice_stream, bob_stream = open_stream(alice), open_stream(bob)

    first = _completed(alice, imageUrl="/a1.png")
    for_bob = _completed(bob, imageUrl="/b1.png")
    second = _completed(alice, imageUrl="/a2.png")

    received = alice_stream.events(2)
    assert [m.id for m in received] == [str(first.id), str(second.id)]
    message = received[0]
    assert message.event == "background-change.completed"
    assert message.json == {
        "id": str(first.id),
        "event": "posegen.background-change.completed",
        "occurred": first.occurred.isoformat(),
        "resourceId": first.resource.id,
        "payload": first.payload,
    }
    assert [m.id for m in bob_stream.events(1)] == [str(for_bob.id)]
    # Nothing else arrives for either of them: Bob's event never reaches Alice.
    assert alice_stream.events(1, timeout=2) == []
    assert bob_stream.events(1, timeout=0.5) == []


def test_idle_stream_sends_keepalive_comments(
    open_stream: Callable[..., EventStream], account: Account
) -> None:
    stream = open_stream(account)

    # Two in a row, however slowly a loaded machine delivers them: not a count in a window.
    assert stream.next_comments("keepalive", 2) == ["keepalive", "keepalive"]


@pytest.mark.parametrize("api_process", ["same", "another"])
def test_reconnect_with_last_event_id_resumes_without_loss_or_duplicates(
    open_stream: Callable[..., EventStream],
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    api_process: str,
) -> None:
    """Events emitted while disconnected arrive after the reconnect, in order, once each.

    The last one is emitted just before reconnecting, so Prefect has not stored it yet when the
    stream subscribes: the case where a naive backfill loses events. With "another" API
    process the Last-Event-ID is unknown locally and must be looked up in Prefect.
    """
    stream = open_stream(account)
    seen = _completed(account)
    assert [m.id for m in stream.events(1)] == [str(seen.id)]
    stream.close()

    missed_early = _completed(account)
    time.sleep(6)  # stored by Prefect by the time we reconnect
    missed_late = _completed(account)
    if api_process == "another":
        monkeypatch.setattr(event_stream, "_recent", OrderedDict())
    resumed = open_stream(account, last_event_id=str(seen.id))
    live = _completed(account)

    received = resumed.events(3, timeout=25)
    assert [m.id for m in received] == [str(missed_early.id), str(missed_late.id), str(live.id)]
    assert resumed.events(1, timeout=1) == []


def test_unknown_last_event_id_streams_new_events_only(
    open_stream: Callable[..., EventStream], account: Account
) -> None:
    stream = open_stream(account, last_event_id=str(uuid.uuid4()))
    event = _completed(account)

    assert [m.id for m in stream.events(1)] == [str(event.id)]


def test_without_a_token_is_401(client: TestClient) -> None:
    response = client.get(EVENTS)

    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


def test_unreachable_prefect_is_503_with_the_error_body(
    client: TestClient, account: Account, prefect_unreachable: None
) -> None:
    response = client.get(EVENTS, headers=account.headers)

    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "ServiceUnavailable"
    assert "message" in body


def test_client_disconnect_forgets_its_listener(
    open_stream: Callable[..., EventStream], account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[uuid.UUID] = []
    close = event_stream.UserEventStream.close

    async def recording_close(self: event_stream.UserEventStream) -> None:
        await close(self)
        closed.append(self.user_id)

    monkeypatch.setattr(event_stream.UserEventStream, "close", recording_close)
    stream = open_stream(account)
    assert stream.next_comments("keepalive", 1) == ["keepalive"]  # streaming

    stream.close()

    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed == [account.id]


def test_stream_is_documented_as_text_event_stream(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][EVENTS]["get"]

    assert "text/event-stream" in operation["responses"]["200"]["content"]
