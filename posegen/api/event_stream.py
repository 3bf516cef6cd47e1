"""Relaying one user's `posegen.*` Prefect events as Server-Sent Events, resumable by event id.

Live events come from the process's one Prefect events subscription (`posegen.api.event_hub`),
which hands this stream only its user's events; each is checked again here before anything is
sent. A reconnect with
`Last-Event-ID` resumes from that event's `occurred` time. Prefect's stored record (what
`/events/filter` and the websocket backfill read) trails the live stream by up to its persister's
flush interval, so a resumed stream reads the record twice: at once for what is surely complete,
and again once `events_settle_seconds` have passed for the last few seconds before it subscribed,
holding live events back meanwhile so the client still receives everything in `occurred` order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.events import Event
from prefect.events.filters import (
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventRelatedFilter,
)
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from posegen.api.event_hub import EventHub, Listener
from posegen.config import get_settings
from posegen.errors import ServiceUnavailable
from posegen.events import EVENT_PREFIX, user_resource_id

logger = logging.getLogger("posegen.api.events")

KEEPALIVE = ": keepalive\n\n"
_PAGE_SIZE = 50  # the most /events/filter returns per page
_LOOKUP_INTERVAL = 0.5
# Ids remembered per connection so backfill and live stream never send one event twice.
_SENT_MEMORY = 10_000
# Events this process relayed recently, so a reconnect to the same process resumes at once
# instead of waiting for Prefect to store the event it names.
_RECENT_MEMORY = 10_000
_recent: OrderedDict[tuple[uuid.UUID, uuid.UUID], datetime] = OrderedDict()


class UserEventStream:
    """One client's stream: open it (503 if Prefect is unreachable), iterate it, close it."""

    def __init__(self, hub: EventHub, user_id: uuid.UUID, last_event_id: str | None = None) -> None:
        settings = get_settings()
        self._hub = hub
        self.user_id = user_id
        self._user_resource = user_resource_id(user_id)
        self._last_event_id = _parse_event_id(last_event_id)
        self._heartbeat = settings.events_heartbeat_seconds
        self._settle = timedelta(seconds=settings.events_settle_seconds)
        self._listener: Listener | None = None
        self._sent: set[uuid.UUID] = set()
        self._sent_order: deque[uuid.UUID] = deque()
        self._resume_since: datetime | None = None
        self._floor = datetime.now(UTC)
        self._subscribed_at = self._floor
        self._subscribed_monotonic = time.monotonic()

    async def open(self) -> None:
        """Find where to resume and subscribe, before any byte of the response is sent.

        Done up front so an unreachable Prefect is a 503 with the usual error body rather than
        a 200 stream that ends at once.
        """
        try:
            if self._last_event_id is not None:
                self._resume_since = await self._occurred_of(self._last_event_id)
                if self._resume_since is None:
                    logger.info(
                        "Last-Event-ID %s not found; streaming new events only", self._last_event_id
                    )
            listener = await self._hub.listen(self.user_id)
        except Exception as exc:
            logger.warning("Event stream unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "Live events are not available right now; try again in a minute.",
                reason=type(exc).__name__,
            ) from exc
        self._listener = listener
        self._subscribed_at = datetime.now(UTC)
        self._subscribed_monotonic = time.monotonic()
        self._floor = self._subscribed_at
        if self._resume_since is not None and self._last_event_id is not None:
            self._floor = self._resume_since
            self._remember_sent(self._last_event_id)  # the client has it already

    @property
    def _queue(self) -> asyncio.Queue[Event | None]:
        assert self._listener is not None, "open() first"
        return self._listener.queue

    async def close(self) -> None:
        """Stop receiving: the hub forgets this listener (its subscription stays for others)."""
        if self._listener is not None:
            listener, self._listener = self._listener, None
            self._hub.unlisten(listener)

    async def messages(self) -> AsyncIterator[str]:
        """SSE messages: the backfill of a resumed stream first, then live events and keepalives."""
        if self._resume_since is not None:
            try:
                async for message in self._backfill(self._resume_since):
                    yield message
            except Exception as exc:
                # End the stream: the client reconnects with the last id it got, losing nothing.
                logger.warning("Event backfill failed: %s", type(exc).__name__)
                return
        while True:
            try:
                event = await asyncio.wait_for(self._queue.get(), self._heartbeat)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if event is None:
                return  # Prefect went away; the client reconnects with Last-Event-ID
            message = self._relay(event)
            if message is not None:
                yield message

    async def _backfill(self, since: datetime) -> AsyncIterator[str]:
        complete_until = self._subscribed_at - self._settle
        for event in await self._read_stored(since, complete_until):
            message = self._relay(event)
            if message is not None:
                yield message
        # Until Prefect has stored every event that occurred before we subscribed, live events
        # wait here: sent now, they would overtake older ones the second read still finds.
        settled = self._subscribed_monotonic + self._settle.total_seconds()
        while (remaining := settled - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, self._heartbeat))
            if settled - time.monotonic() > 0:
                yield KEEPALIVE
        stored = await self._read_stored(max(since, complete_until), datetime.now(UTC))
        live, ended = self._drain_queue()
        for event in sorted([*stored, *live], key=lambda e: e.occurred):
            message = self._relay(event)
            if message is not None:
                yield message
        if ended:
            self._queue.put_nowait(None)

    def _relay(self, event: Event) -> str | None:
        """The SSE message for an event this client should get, or None.

        The ownership check repeats the server-side filter on purpose: a user must never see
        another user's event, whatever a future filter change or a backfill query returns.
        """
        if event.id in self._sent or event.occurred < self._floor:
            return None
        if not event.event.startswith(EVENT_PREFIX) or not self._owns(event):
            logger.error("Dropped event %s not matching the stream's filter", event.id)
            return None
        name = event.event.removeprefix(EVENT_PREFIX)
        if "\n" in name or "\r" in name:
            return None
        self._remember_sent(event.id)
        _remember_recent(self.user_id, event.id, event.occurred)
        return format_message(event, name)

    def _owns(self, event: Event) -> bool:
        return any(related.id == self._user_resource for related in event.related)

    def _remember_sent(self, event_id: uuid.UUID) -> None:
        self._sent.add(event_id)
        self._sent_order.append(event_id)
        if len(self._sent_order) > _SENT_MEMORY:
            self._sent.discard(self._sent_order.popleft())

    def _drain_queue(self) -> tuple[list[Event], bool]:
        events: list[Event] = []
        ended = False
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is None:
                ended = True
            else:
                events.append(event)
        return events, ended

    def _filter(self, **fields: Any) -> EventFilter:
        return EventFilter(
            event=EventNameFilter(prefix=[EVENT_PREFIX]),
            related=EventRelatedFilter(id=[self._user_resource]),
            **fields,
        )

    async def _occurred_of(self, event_id: uuid.UUID) -> datetime | None:
        """When the client's last event occurred; waits for Prefect to store it if need be."""
        cached = _recent.get((self.user_id, event_id))
        if cached is not None:
            return cached
        deadline = time.monotonic() + self._settle.total_seconds()
        async with get_client() as client:
            while True:
                page = await client.read_events(
                    filter=self._filter(id=EventIDFilter(id=[event_id])), limit=1
                )
                if page.events:
                    return page.events[0].occurred
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(_LOOKUP_INTERVAL)

    async def _read_stored(self, since: datetime, until: datetime) -> list[Event]:
        """The user's stored events in [since, until], oldest first, every page."""
        if until < since:
            return []
        occurred = EventOccurredFilter(since=since, until=until)
        async with get_client() as client:
            page = await client.read_events(
                filter=self._filter(occurred=occurred, order=EventOrder.ASC), limit=_PAGE_SIZE
            )
            events: list[Event] = list(page.events)
            while page.next_page is not None:
                page = await client.read_events_page(str(page.next_page))
                events.extend(page.events)
        return events


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` that closes its Prefect subscription however the response ends.

    Closing lives here rather than in the generator: a client that disconnects before the
    first message never starts the generator, so its `finally` would never run.
    """

    media_type = "text/event-stream"

    def __init__(self, stream: UserEventStream) -> None:
        super().__init__(
            stream.messages(),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.close()


def format_message(event: Event, name: str) -> str:
    """One SSE message; `data` is single-line JSON, so it needs no further escaping."""
    data = {
        "id": str(event.id),
        "event": event.event,
        "occurred": event.occurred.isoformat(),
        "resourceId": event.resource.id,
        "payload": event.payload,
    }
    return f"id: {event.id}\nevent: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def _parse_event_id(value: str | None) -> uuid.UUID | None:
    """A Last-Event-ID that is not one of our ids names nothing: stream new events only."""
    if not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _remember_recent(user_id: uuid.UUID, event_id: uuid.UUID, occurred: datetime) -> None:
    _recent[(user_id, event_id)] = occurred
    while len(_recent) > _RECENT_MEMORY:
        _recent.popitem(last=False)
