"""`posegen up`'s automations include the alert webhook exactly when POSEGEN_ALERT_WEBHOOK_URL
is set: one automation, its block following the setting, gone when the setting is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client

from posegen.orchestration import (
    ALERT_AUTOMATION,
    ALERT_WEBHOOK_BLOCK,
    ALERT_WEBHOOK_PAYLOAD,
    RECONCILE_AUTOMATION,
    ZOMBIE_AUTOMATION,
    ensure_automations,
)


@pytest.fixture
def reconciler_registered(prefect_api: str) -> Iterator[None]:
    """The reconciler's deployment (ensure_automations points at it); automations removed after:
    on the session's server they would react to other tests' runs."""
    from flows.refund_reconciler import refund_reconciler

    async def register() -> None:
        deployment = await refund_reconciler.to_deployment(name="refund-reconciler")
        await deployment.apply()

    asyncio.run(register())
    yield

    async def delete() -> None:
        async with get_client() as client:
            for automation in await client.read_automations():
                if automation.name.startswith("posegen:"):
                    await client.delete_automation(automation.id)

    asyncio.run(delete())


async def _posegen_automations() -> dict[str, Any]:
    async with get_client() as client:
        return {a.name: a for a in await client.read_automations() if a.name.startswith("posegen:")}


def test_the_alert_automation_follows_the_webhook_setting(
    reconciler_registered: None, settings_env: Callable[..., None]
) -> None:
    settings_env(POSEGEN_ALERT_WEBHOOK_URL="http://127.0.0.1:9/first")
    assert asyncio.run(ensure_automations()) == [
        ZOMBIE_AUTOMATION,
        RECONCILE_AUTOMATION,
        ALERT_AUTOMATION,
    ]
    alert = asyncio.run(_posegen_automations())[ALERT_AUTOMATION]
    assert alert.trigger.expect == {"posegen.alert.triggered", "posegen.alert.resolved"}
    (action,) = alert.actions
    assert action.type == "call-webhook"
    assert action.payload == ALERT_WEBHOOK_PAYLOAD
    block = asyncio.run(Webhook.aload(ALERT_WEBHOOK_BLOCK))
    assert block.url.get_secret_value() == "http://127.0.0.1:9/first"
    assert block.headers.get_secret_value() == {"Content-Type": "application/json"}

    # A new URL on the next `posegen up`: same single automation, the block posts to the new one.
    settings_env(POSEGEN_ALERT_WEBHOOK_URL="http://127.0.0.1:9/second")
    asyncio.run(ensure_automations())
    automations = asyncio.run(_posegen_automations())
    assert sorted(automations) == sorted(
        [ZOMBIE_AUTOMATION, RECONCILE_AUTOMATION, ALERT_AUTOMATION]
    )
    assert automations[ALERT_AUTOMATION].actions[0].block_document_id == action.block_document_id
    block = asyncio.run(Webhook.aload(ALERT_WEBHOOK_BLOCK))
    assert block.url.get_secret_value() == "http://127.0.0.1:9/second"

    # Setting removed: the automation goes, so nothing is posted any more.
    settings_env(POSEGEN_ALERT_WEBHOOK_URL="")
    assert asyncio.run(ensure_automations()) == [ZOMBIE_AUTOMATION, RECONCILE_AUTOMATION]
    assert ALERT_AUTOMATION not in asyncio.run(_posegen_automations())
