"""Names and setup of the Prefect-side resources posegen relies on: limits and automations.

Kept in the library (not in flows/) because the API, the CLI and `posegen up` create the same
limits the flows acquire, and tests check the same names.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import get_client
from prefect.utilities.asyncutils import run_coro_as_sync

from posegen.config import get_settings

BACKGROUND_CHANGE_LIMIT = "posegen-background-change"
FLUX_RATE_LIMIT = "posegen-flux"

_limits_ready = False


async def ensure_limits() -> None:
    """Create (or correct) the global concurrency and rate limits; cheap to call again."""
    global _limits_ready
    if _limits_ready:
        return
    settings = get_settings()
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            BACKGROUND_CHANGE_LIMIT, settings.background_change_slots
        )
        await client.upsert_global_concurrency_limit_by_name(
            FLUX_RATE_LIMIT,
            settings.flux_burst,
            slot_decay_per_second=settings.flux_rate_per_minute / 60,
        )
    _limits_ready = True


def ensure_limits_sync() -> None:
    run_coro_as_sync(ensure_limits())


ZOMBIE_AUTOMATION = "posegen: crash flow runs that stopped sending heartbeats"
# What the reconciler gets when a change ends badly. The run that ended is refunded however young
# its charge (a dead run needs no grace); the grace is for a charge no run is tied to yet, and
# it keeps its default (10 min). With a grace of 0, any seller's change between the API's charge
# and the run id it ties after the 202 (tens of ms; up to Prefect's request timeout) was refunded
# as "no flow run was started" when anybody's change failed, and its run then failed on finding
# its charge refunded (a retry right after a failure in the web app hit exactly that).
RECONCILE_ON_FAILURE: dict[str, Any] = {}
RECONCILE_AUTOMATION = "posegen: reconcile refunds when a background change ends badly"


def posegen_automations(reconciler_deployment_id: object) -> list[Any]:
    """The automations operators rely on, as Prefect objects (created by `ensure_automations`).

    1. A run whose process died (SIGKILL, lost machine) stops sending heartbeats: mark it
       Crashed after three missed beats (`flows_crashed_after_seconds`), so the UI and the
       reconciler see the truth.
    2. A background-change run that ends Crashed, Failed or Cancelled triggers the
       refund reconciler at once, instead of waiting for its 5-minute schedule.
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    silence = timedelta(seconds=get_settings().flows_silence_seconds)
    ended_badly = {
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
    }
    return [
        Automation(
            name=ZOMBIE_AUTOMATION,
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", *ended_badly},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=silence,
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message=f"No heartbeat for {silence.seconds} s: the run's process died.",
                )
            ],
        ),
        Automation(
            name=RECONCILE_AUTOMATION,
            trigger=EventTrigger(
                expect=ended_badly,
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ResourceSpecification(
                    {"prefect.resource.role": "flow", "prefect.resource.name": "background-change"}
                ),
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                RunDeployment(
                    source="selected",
                    deployment_id=reconciler_deployment_id,
                    parameters=RECONCILE_ON_FAILURE,
                )
            ],
        ),
    ]


ALERT_AUTOMATION = "posegen: post alerts to the webhook"
ALERT_WEBHOOK_BLOCK = "posegen-alert-webhook"
# Slack's incoming webhooks (and Mattermost, Discord's /slack endpoint, most chat tools) take
# `{"text": ...}`. The event carries the whole line; `tojson` quotes and escapes it.
ALERT_WEBHOOK_PAYLOAD = '{"text": {{ event.payload.text | tojson }}}'


def alert_automation(webhook_block_id: object) -> Any:
    """Every `posegen.alert.triggered` / `.resolved` event, posted to the webhook as it comes.

    The ops-alerts flow emits one event per change of state, so this sends one message when an
    alert fires and one when it clears, never a repeat while it stays triggered.
    """
    from prefect.automations import Automation
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    from posegen.events import EVENT_ALERT_RESOLVED, EVENT_ALERT_TRIGGERED

    return Automation(
        name=ALERT_AUTOMATION,
        trigger=EventTrigger(
            expect={EVENT_ALERT_TRIGGERED, EVENT_ALERT_RESOLVED},
            match=ResourceSpecification({"prefect.resource.id": ["posegen.alert.*"]}),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=ALERT_WEBHOOK_PAYLOAD)],
    )


async def ensure_alert_automation() -> str | None:
    """With POSEGEN_ALERT_WEBHOOK_URL: the webhook block (URL updated every time) and the
    automation; without it: no automation, so no posts, even if an earlier run made one.
    Returns the automation's name when it is in place."""
    from prefect.blocks.webhook import Webhook

    url = get_settings().alert_webhook_url
    async with get_client() as client:
        current = next(
            (a for a in await client.read_automations() if a.name == ALERT_AUTOMATION), None
        )
    if url is None or not url.get_secret_value():
        if current is not None:
            async with get_client() as client:
                await client.delete_automation(current.id)
        return None
    block = Webhook(
        method="POST",
        url=url.get_secret_value(),
        headers={"Content-Type": "application/json"},
    )
    block_id = await block.asave(ALERT_WEBHOOK_BLOCK, overwrite=True)
    if current is not None and current.actions[0].block_document_id != block_id:
        async with get_client() as client:
            await client.delete_automation(current.id)
        current = None
    if current is None:
        await alert_automation(block_id).acreate()
    return ALERT_AUTOMATION


def _actions(automation: Any) -> list[dict[str, Any]]:
    return [action.model_dump(mode="json") for action in automation.actions]


async def ensure_automations() -> list[str]:
    """Create the automations that are missing (by name) and correct those whose actions differ
    from posegen's (a server that kept an older release's, e.g. the reconciler's zero grace);
    returns the names now in place."""

    async with get_client() as client:
        reconciler = await client.read_deployment_by_name(
            get_settings().deployment_refund_reconciler
        )
        existing = {a.name: a for a in await client.read_automations()}
        names = []
        for automation in posegen_automations(reconciler.id):
            found = existing.get(automation.name)
            if found is None:
                await automation.acreate()
            elif _actions(found) != _actions(automation):
                await client.update_automation(found.id, automation)
            names.append(automation.name)
    alert = await ensure_alert_automation()
    if alert is not None:
        names.append(alert)
    return names
