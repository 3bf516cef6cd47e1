"""GET /ws, the seed's WebSocket channel: who may connect, subscribe to which channel, and what
arrives (the seed's message names, the SSE stream's payloads, only the caller's own events).

The API runs on a real uvicorn server (tests.sse) and events are emitted with the functions the
flows use (posegen.events), so each message is checked against the one payload shape.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from posegen.api.app import create_app
from posegen.api.event_channel import channel_of
from posegen.events import (
    emit_background_change_completed,
    emit_background_change_failed,
    emit_pose_request_status_changed,
)
from tests.api.conftest import BASE, Account
from tests.sse import EventStream, serve_api
from tests.web.test_sign_in import sign_in

WS = f"{BASE}/ws"


@pytest.fixture
def served_app(prefect_api: str, app_env: dict[str, str]) -> Iterator[tuple[FastAPI, str]]:
    app = create_app()
    with serve_api(app) as url:
        yield app, url


@pytest.fixture
def open_socket(
    served_app: tuple[FastAPI, str],
) -> Iterator[Callable[..., ClientConnection]]:
    sockets: list[ClientConnection] = []
    base = served_app[1].replace("http://", "ws://")

    def open_(account: Account, *, subscribe: bool = True) -> ClientConnection:
        socket = connect(f"{base}{WS}?token={account.token}", open_timeout=10)
        sockets.append(socket)
        if subscribe:
            socket.send(json.dumps({"type": "subscribe", "channel": channel_of(account.id)}))
            assert _next(socket) == {"type": "subscribed", "channel": channel_of(account.id)}
        return socket

    yield open_
    for socket in sockets:
        socket.close()


def _next(socket: ClientConnection, timeout: float = 15.0) -> dict[str, Any] | None:
    try:
        return json.loads(socket.recv(timeout=timeout))
    except TimeoutError:
        return None


def _completed(user: Account, image_url: str = "/files/poses/x.png") -> uuid.UUID:
    pose_id = uuid.uuid4()
    emit_background_change_completed(
        pose_id=pose_id,
        user_id=user.id,
        generation_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        image_url=image_url,
        image_key="poses/x.png",
        background_mode="solid_color",
        credit_charged=10,
    )
    return pose_id


def test_subscriber_gets_own_events_with_the_seeds_names_and_never_anothers(
    open_socket: Callable[..., ClientConnection], new_account: Callable[..., Account]
) -> None:
    alice, bob = new_account(), new_account()
    alice_socket, bob_socket = open_socket(alice), open_socket(bob)

    alice_pose = _completed(alice, "/files/a.png")
    bob_pose = _completed(bob, "/files/b.png")
    failed_pose = uuid.uuid4()
    emit_background_change_failed(
        pose_id=failed_pose,
        user_id=alice.id,
        request_id=uuid.uuid4(),
        error_message="FLUX refused the prompt",
        credit_refunded=10,
        state="FAILED",
        reconciled=False,
    )
    request_id = uuid.uuid4()
    emit_pose_request_status_changed(
        request_id=request_id,
        requester_id=alice.id,
        from_status="pending",
        to_status="approved",
        notes=None,
        admin_id=uuid.uuid4(),
    )

    complete, failed, status = (_next(alice_socket) for _ in range(3))
    assert complete is not None and failed is not None and status is not None
    assert complete["type"] == "background_change_complete"
    assert (complete["poseId"], complete["imageUrl"]) == (str(alice_pose), "/files/a.png")
    assert {"generationId", "backgroundMode", "creditCharged", "eventId"} <= set(complete)
    assert (complete["backgroundMode"], complete["creditCharged"]) == ("solid_color", 10)
    assert failed["type"] == "background_change_failed"
    assert (failed["poseId"], failed["errorMessage"], failed["creditRefunded"]) == (
        str(failed_pose),
        "FLUX refused the prompt",
        10,
    )
    assert status["type"] == "pose_request_status_changed"
    assert (status["requestId"], status["to"]) == (str(request_id), "approved")
    bob_message = _next(bob_socket)
    assert bob_message is not None
    assert (bob_message["type"], bob_message["poseId"]) == (
        "background_change_complete",
        str(bob_pose),
    )
    assert _next(alice_socket, timeout=2) is None
    assert _next(bob_socket, timeout=0.5) is None


def test_another_users_channel_is_an_error_and_brings_nothing(
    open_socket: Callable[..., ClientConnection], new_account: Callable[..., Account]
) -> None:
    alice, mallory = new_account(), new_account()
    open_socket(alice)
    snoop = open_socket(mallory, subscribe=False)

    snoop.send(json.dumps({"type": "subscribe", "channel": channel_of(alice.id)}))
    refused = _next(snoop)
    _completed(alice)

    assert refused is not None and refused["type"] == "error"
    assert refused["channel"] == channel_of(alice.id)
    assert _next(snoop, timeout=3) is None


def test_nothing_arrives_before_subscribing(
    open_socket: Callable[..., ClientConnection], account: Account
) -> None:
    socket = open_socket(account, subscribe=False)
    _completed(account)
    assert _next(socket, timeout=3) is None
    socket.send(json.dumps({"type": "ping"}))
    assert _next(socket) == {"type": "pong"}


@pytest.mark.parametrize("query", ["", "?token=", "?token=not-a-jwt"])
def test_missing_or_bad_token_closes_with_4401(client: TestClient, query: str) -> None:
    with (
        client.websocket_connect(f"{WS}{query}") as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_json()
    assert closed.value.code == 4401


def test_the_web_apps_session_cookie_opens_the_channel(
    prefect_api: str, client: TestClient, db_url: str, account: Account
) -> None:
    sign_in(client, db_url, account)
    with client.websocket_connect(WS) as socket:
        socket.send_json({"type": "subscribe", "channel": channel_of(account.id)})
        assert socket.receive_json() == {"type": "subscribed", "channel": channel_of(account.id)}


def test_a_cookie_from_another_sites_page_is_refused(
    client: TestClient, db_url: str, account: Account
) -> None:
    sign_in(client, db_url, account)
    headers = {"Origin": "https://evil.example"}
    with (
        client.websocket_connect(WS, headers=headers) as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_json()
    assert closed.value.code == 4403


def test_the_token_in_the_url_is_never_logged(
    open_socket: Callable[..., ClientConnection],
    account: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    socket = open_socket(account)
    socket.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "WebSocket" in logged  # uvicorn did log the handshake
    assert account.token not in logged and "token=[redacted]" in logged


def test_sse_and_websocket_listeners_share_one_prefect_subscription(
    served_app: tuple[FastAPI, str],
    open_socket: Callable[..., ClientConnection],
    new_account: Callable[..., Account],
) -> None:
    app, url = served_app
    users = [new_account() for _ in range(3)]
    streams = [EventStream.open(f"{url}{BASE}/events", user.headers) for user in users]
    sockets = [open_socket(user) for user in users]
    try:
        hub = app.state.event_hub
        assert (hub.connections_opened, hub.listener_count) == (1, 6)
        pose = _completed(users[1])
        [message] = streams[1].events(1)
        assert message.json["payload"]["poseId"] == str(pose)
        received = _next(sockets[1])
        assert received is not None and received["poseId"] == str(pose)
        # The same payload on both transports.
        expected = {
            k: v
            for k, v in received.items()
            if k not in ("type", "eventId", "occurred", "resourceId")
        }
        assert message.json["payload"] == expected
    finally:
        for stream in streams:
            stream.close()
    for socket in sockets:
        socket.close()
    assert hub.connections_opened == 1


def test_closed_socket_is_forgotten_by_the_hub(
    served_app: tuple[FastAPI, str],
    open_socket: Callable[..., ClientConnection],
    account: Account,
) -> None:
    import time

    socket = open_socket(account)
    hub = served_app[0].state.event_hub
    assert hub.listener_count == 1
    socket.close()
    deadline = time.monotonic() + 5
    while hub.listener_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.listener_count == 0
    with pytest.raises(ConnectionClosed):
        socket.recv(timeout=1)
