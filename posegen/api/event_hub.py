"""One Prefect events subscription per API process, fanned out in memory to its listeners.

Every SSE stream (`GET /events`) and WebSocket (`GET /ws`) of this process registers a
`Listener` for its user here; the hub holds a single `posegen.*` subscription to Prefect's events
websocket and hands each event to the listeners of the users it is related to
(`posegen.user.{id}`), and to nobody else. A thousand open tabs are one connection to Prefect,
not a thousand.

The subscription is opened by the first listener (so an unreachable Prefect is a 503 for it)
and kept while the app runs; if it ends for good, every listener is told (its stream ends and the
client reconnects, resuming by event id), and the next listener opens a new one. A listener that
falls too far behind is ended the same way instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import anyio
from prefect.events import Event
from prefect.events.clients import PrefectEventSubscriber, get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from starlette.types import ASGIApp

from posegen.events import EVENT_PREFIX, user_resource_id

logger = logging.getLogger("posegen.api.events")

_CONNECT_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 5.0
# Events waiting for one slow client before it is cut off (it resumes by Last-Event-ID).
QUEUE_LIMIT = 1_000
_USER_PREFIX = user_resource_id("")


@dataclass(eq=False)
class Listener:
    """One connected client: its user and the queue the hub fills (None: the stream ended)."""

    user_id: uuid.UUID
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT + 1)
    )
    ended: bool = False

    def deliver(self, event: Event | None) -> None:
        if self.ended:
            return
        if event is not None and self.queue.qsize() < QUEUE_LIMIT:
            self.queue.put_nowait(event)
            return
        # The end, or a client too slow to keep up: make room for the end marker only.
        if event is not None:
            logger.warning("Listener of user %s fell %d events behind", self.user_id, QUEUE_LIMIT)
            while not self.queue.empty():
                self.queue.get_nowait()
        self.ended = True
        self.queue.put_nowait(None)


class EventHub:
    """The process's one subscription and the listeners it feeds, on one event loop."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._subscriber: PrefectEventSubscriber | None = None
        self._pump: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.connections_opened = 0  # how many subscriptions this hub has opened (tests, bench)

    @property
    def listener_count(self) -> int:
        return sum(len(listeners) for listeners in self._listeners.values())

    @property
    def connected(self) -> bool:
        return self._pump is not None and not self._pump.done()

    async def listen(self, user_id: uuid.UUID) -> Listener:
        """A new listener for the user's events; raises if Prefect cannot be reached."""
        await self._connect()
        listener = Listener(user_id)
        self._listeners[user_resource_id(user_id)].add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        key = user_resource_id(listener.user_id)
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[key]

    async def close(self) -> None:
        """Stop the subscription and end every listener (app shutdown)."""
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            if self._pump is not None:
                self._pump.cancel()
                await asyncio.gather(self._pump, return_exceptions=True)
            await self._close_subscriber()
        self._end_all()

    async def _connect(self) -> None:
        async with self._connecting:
            if self.connected:
                return
            subscriber = get_events_subscriber(
                filter=EventFilter(event=EventNameFilter(prefix=[EVENT_PREFIX])),
                reconnection_attempts=10,
                reconnect_on_clean_close=True,
            )
            with anyio.fail_after(_CONNECT_TIMEOUT):
                await subscriber.__aenter__()
            self._subscriber = subscriber
            self.connections_opened += 1
            self._pump = asyncio.create_task(self._receive(subscriber), name="posegen-event-hub")

    async def _receive(self, subscriber: PrefectEventSubscriber) -> None:
        try:
            async for event in subscriber:
                self.dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("Prefect event subscription ended: %s", type(exc).__name__)
        # Ended for good (Prefect's client retried already): tell every listener, so clients
        # reconnect and resume by id; the next listener opens a new subscription.
        await self._close_subscriber()
        self._end_all()

    def dispatch(self, event: Event) -> None:
        """Hand the event to the listeners of each user it is related to, and only those."""
        if not event.event.startswith(EVENT_PREFIX):
            return
        for related in event.related:
            if related.id.startswith(_USER_PREFIX):
                for listener in tuple(self._listeners.get(related.id, ())):
                    listener.deliver(event)

    async def _close_subscriber(self) -> None:
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            try:
                await subscriber.__aexit__(None, None, None)
            except Exception as exc:  # already broken; nothing left to release
                logger.debug("Closing the event subscription: %s", type(exc).__name__)

    def _end_all(self) -> None:
        listeners = [listener for group in self._listeners.values() for listener in group]
        self._listeners.clear()
        for listener in listeners:
            listener.deliver(None)


def hub_of(app: ASGIApp) -> EventHub:
    """The app's hub on the running loop (a new one if the loop changed: a new test client)."""
    state = app.state  # type: ignore[attr-defined]
    hub: EventHub | None = getattr(state, "event_hub", None)
    if hub is None or hub.loop is not asyncio.get_running_loop():
        hub = EventHub()
        state.event_hub = hub
    return hub
