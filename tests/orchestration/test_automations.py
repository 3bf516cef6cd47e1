"""The automations `posegen up` creates: present once, with the triggers and actions intended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client

from posegen.config import get_settings
from posegen.orchestration import RECONCILE_AUTOMATION, ZOMBIE_AUTOMATION, ensure_automations


@pytest.fixture
def reconciler_deployment(prefect_api: str) -> str:
    """Register the reconciler deployment (as the runner does) without serving it."""
    from flows.refund_reconciler import refund_reconciler

    async def register() -> str:
        deployment = await refund_reconciler.to_deployment(name="refund-reconciler")
        return str(await deployment.apply())

    return asyncio.run(register())


@pytest.fixture
def cleanup_automations(prefect_api: str) -> Iterator[None]:
    """Delete them afterwards: on the session's server they would react to other tests' runs."""
    yield

    async def delete() -> None:
        async with get_client() as client:
            for automation in await client.read_automations():
                if automation.name.startswith("posegen:"):
                    await client.delete_automation(automation.id)

    asyncio.run(delete())


def test_automations_are_created_once_with_their_triggers(
    reconciler_deployment: str, cleanup_automations: None
) -> None:
    assert asyncio.run(ensure_automations()) == [ZOMBIE_AUTOMATION, RECONCILE_AUTOMATION]
    asyncio.run(ensure_automations())  # a second `posegen up` adds nothing

    async def read() -> list:  # type: ignore[type-arg]
        async with get_client() as client:
            return [a for a in await client.read_automations() if a.name.startswith("posegen:")]

    automations = {a.name: a for a in asyncio.run(read())}
    assert sorted(automations) == sorted([ZOMBIE_AUTOMATION, RECONCILE_AUTOMATION])

    zombie = automations[ZOMBIE_AUTOMATION]
    assert zombie.trigger.posture == "Proactive"
    assert zombie.trigger.after == {"prefect.flow-run.heartbeat"}
    assert zombie.actions[0].type == "change-flow-run-state"
    assert zombie.actions[0].state.value == "CRASHED"

    reconcile = automations[RECONCILE_AUTOMATION]
    assert reconcile.trigger.expect == {
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
    }
    assert reconcile.actions[0].type == "run-deployment"
    assert str(reconcile.actions[0].deployment_id) == reconciler_deployment
    assert get_settings().deployment_refund_reconciler.startswith("refund-reconciler/")


def test_an_older_releases_reconciler_trigger_is_corrected(
    reconciler_deployment: str, cleanup_automations: None
) -> None:
    """A server that kept the automation from a release that ran the reconciler with no grace
    (refunding changes still being submitted) gets posegen's actions back on the next `up`."""
    import uuid

    from posegen.orchestration import RECONCILE_ON_FAILURE, posegen_automations

    older = posegen_automations(uuid.UUID(reconciler_deployment))[1]
    older.actions[0].parameters = {"grace_minutes": 0}
    asyncio.run(older.acreate())

    assert asyncio.run(ensure_automations()) == [ZOMBIE_AUTOMATION, RECONCILE_AUTOMATION]

    async def read() -> list:  # type: ignore[type-arg]
        async with get_client() as client:
            return await client.read_automations_by_name(RECONCILE_AUTOMATION)

    (reconcile,) = asyncio.run(read())
    assert reconcile.actions[0].parameters == RECONCILE_ON_FAILURE
    assert str(reconcile.actions[0].deployment_id) == reconciler_deployment
    assert reconcile.trigger.expect == {
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
    }


@pytest.mark.parametrize(("crashed_after", "silence"), [(None, 90), ("45", 45)])
def test_the_zombie_window_is_three_beats_unless_set(
    monkeypatch: pytest.MonkeyPatch, crashed_after: str | None, silence: int
) -> None:
    """Tests shorten it (tests/unattended); production waits three missed 30 s beats."""
    import uuid
    from datetime import timedelta

    from posegen.config import reset_settings
    from posegen.orchestration import posegen_automations

    monkeypatch.delenv("POSEGEN_FLOWS_HEARTBEAT_SECONDS", raising=False)
    if crashed_after is None:
        monkeypatch.delenv("POSEGEN_FLOWS_CRASHED_AFTER_SECONDS", raising=False)
    else:
        monkeypatch.setenv("POSEGEN_FLOWS_CRASHED_AFTER_SECONDS", crashed_after)
    reset_settings()
    try:
        zombie = posegen_automations(uuid.uuid4())[0]
        assert zombie.trigger.within == timedelta(seconds=silence)
    finally:
        monkeypatch.undo()
        reset_settings()
