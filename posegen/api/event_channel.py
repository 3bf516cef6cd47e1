"""The seed's WebSocket channel: who is connecting, what they subscribe to, and the messages.

`GET /ws` takes a bearer token in `?token=` (never logged: `posegen.logging` redacts it) or the
web app's session cookie; anything else is closed with 4401. The client sends
`{"type": "subscribe", "channel": "pose-generator:{userId}"}` for its own user and gets
`{"type": "subscribed", "channel": ...}`; another user's channel gets an error and nothing else.
Events come from the process's one subscription (`posegen.api.event_hub`), the same source and
payloads as the SSE stream, with the seed's message names
(`posegen.events.WEBSOCKET_MESSAGE_TYPES`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
from prefect.events import Event
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from posegen.api.event_hub import EventHub, Listener
from posegen.auth import decode_token
from posegen.db.session import get_sessionmaker
from posegen.domain.sign_in import SESSION_COOKIE, find_session
from posegen.domain.users import get_user
from posegen.errors import PosegenError
from posegen.events import WEBSOCKET_MESSAGE_TYPES, user_resource_id

logger = logging.getLogger("posegen.api.events")

CHANNEL_PREFIX = "pose-generator:"
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_UNAVAILABLE = 1013  # "try again later": Prefect's events are unreachable
CLOSE_RESTART = 1012  # the event subscription ended; reconnect
_MESSAGE_LIMIT = 4096  # bytes: subscribe messages are tiny


def channel_of(user_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


def message_of(event: Event) -> dict[str, Any] | None:
    """The channel's message for an event: the seed's `type`, the payload's fields, the id."""
    kind = WEBSOCKET_MESSAGE_TYPES.get(event.event)
    if kind is None:
        return None
    return {
        **event.payload,
        "type": kind,
        "eventId": str(event.id),
        "occurred": event.occurred.isoformat(),
        "resourceId": event.resource.id,
    }


async def authenticate(websocket: WebSocket) -> tuple[uuid.UUID | None, int]:
    """The connecting user's id, or None and the close code to answer with."""
    token = websocket.query_params.get("token")
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if not token and cookie and not _same_origin(websocket):
        # A cookie rides along on any page's handshake: only our own pages may use it.
        return None, CLOSE_FORBIDDEN_ORIGIN
    return await run_in_threadpool(_user_id, token, cookie), CLOSE_UNAUTHORIZED


def _user_id(token: str | None, cookie: str | None) -> uuid.UUID | None:
    with get_sessionmaker()() as session:
        try:
            if token:
                user_id, _role = decode_token(token)
            elif cookie:
                web_session = find_session(session, cookie)
                if web_session is None:
                    return None
                user_id = web_session.user_id
            else:
                return None
        except PosegenError:
            return None
        user = get_user(session, user_id)
        return user.id if user is not None else None


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    return urlsplit(origin).netloc == websocket.headers.get("host")


class ChannelSession:
    """One open WebSocket: relays its user's events once it has subscribed to its channel."""

    def __init__(self, websocket: WebSocket, hub: EventHub, user_id: uuid.UUID) -> None:
        self._websocket = websocket
        self._hub = hub
        self._user_id = user_id
        self._user_resource = user_resource_id(user_id)
        self._channel = channel_of(user_id)
        self._subscribed = False
        self._floor = datetime.now(UTC)

    async def run(self) -> None:
        try:
            listener = await self._hub.listen(self._user_id)
        except Exception as exc:
            logger.warning("WebSocket channel unavailable: %s", type(exc).__name__)
            await self._send({"type": "error", "message": "Live events are not available now."})
            await self._websocket.close(code=CLOSE_UNAVAILABLE)
            return
        self._floor = datetime.now(UTC)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._relay, listener, group.cancel_scope)
                await self._read_client()
                group.cancel_scope.cancel()
        finally:
            self._hub.unlisten(listener)

    async def _read_client(self) -> None:
        while True:
            try:
                raw = await self._websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            await self._answer(raw)

    async def _answer(self, raw: str) -> None:
        try:
            message = json.loads(raw) if len(raw) <= _MESSAGE_LIMIT else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self._send({"type": "error", "message": "Send JSON objects."})
            return
        kind = message.get("type")
        if kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "subscribe":
            channel = message.get("channel")
            if channel == self._channel:
                self._subscribed = True
                await self._send({"type": "subscribed", "channel": channel})
            else:
                await self._send(
                    {
                        "type": "error",
                        "message": f"You can only subscribe to your own channel, {self._channel}.",
                        "channel": channel if isinstance(channel, str) else None,
                    }
                )
        elif kind == "unsubscribe" and message.get("channel") == self._channel:
            self._subscribed = False
            await self._send({"type": "unsubscribed", "channel": self._channel})
        else:
            await self._send({"type": "error", "message": "Unknown message type."})

    async def _relay(self, listener: Listener, scope: anyio.CancelScope) -> None:
        while True:
            event = await listener.queue.get()
            if event is None:
                await self._websocket.close(code=CLOSE_RESTART)
                scope.cancel()
                return
            if not self._subscribed or event.occurred < self._floor:
                continue
            if not any(related.id == self._user_resource for related in event.related):
                logger.error("Dropped event %s not for this channel's user", event.id)
                continue
            message = message_of(event)
            if message is not None:
                await self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        # The client may have left; the read loop then ends the session.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self._websocket.send_text(json.dumps(message, default=str))
