"""The event hub on its own: each event goes to the listeners of the users it is related to and
no other, a listener too far behind is ended (so its client resumes), and forgetting works."""

from __future__ import annotations

import asyncio
import uuid

from prefect.events import Event

from posegen.api import event_hub
from posegen.api.event_hub import EventHub
from posegen.events import EVENT_BACKGROUND_COMPLETED, pose_resource, user_related


def _event(*users: uuid.UUID, name: str = EVENT_BACKGROUND_COMPLETED) -> Event:
    return Event(
        event=name,
        resource=pose_resource(uuid.uuid4()),
        related=[user_related(user) for user in users],
        payload={},
    )


def _drain(queue: asyncio.Queue[Event | None]) -> list[Event | None]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


class _ConnectedHub(EventHub):
    """A hub whose Prefect side is a no-op: dispatch is driven by the test."""

    async def _connect(self) -> None:
        return None


def test_dispatch_reaches_exactly_the_related_users_listeners() -> None:
    async def scenario() -> None:
        hub = _ConnectedHub()
        alice, bob, carol = (uuid.uuid4() for _ in range(3))
        alice_tabs = [await hub.listen(alice), await hub.listen(alice)]
        bob_tab, carol_tab = await hub.listen(bob), await hub.listen(carol)

        for_alice, for_bob = _event(alice), _event(bob)
        foreign = _event(alice, name="prefect.flow-run.Completed")
        for event in (for_alice, for_bob, foreign):
            hub.dispatch(event)

        assert [_drain(tab.queue) for tab in alice_tabs] == [[for_alice], [for_alice]]
        assert _drain(bob_tab.queue) == [for_bob]
        assert _drain(carol_tab.queue) == []
        hub.unlisten(alice_tabs[0])
        hub.dispatch(for_alice)
        assert (_drain(alice_tabs[0].queue), _drain(alice_tabs[1].queue)) == ([], [for_alice])
        assert hub.listener_count == 3

    asyncio.run(scenario())


def test_a_listener_too_far_behind_is_ended_not_grown(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(event_hub, "QUEUE_LIMIT", 3)

    async def scenario() -> None:
        hub = _ConnectedHub()
        user = uuid.uuid4()
        slow = await hub.listen(user)
        for _ in range(5):
            hub.dispatch(_event(user))
        assert _drain(slow.queue) == [None]  # the end: the client reconnects and resumes by id
        hub.dispatch(_event(user))
        assert _drain(slow.queue) == []

    asyncio.run(scenario())


def test_closing_the_hub_ends_every_listener() -> None:
    async def scenario() -> None:
        hub = _ConnectedHub()
        tabs = [await hub.listen(uuid.uuid4()) for _ in range(3)]
        await hub.close()
        assert [_drain(tab.queue) for tab in tabs] == [[None]] * 3
        assert hub.listener_count == 0

    asyncio.run(scenario())
