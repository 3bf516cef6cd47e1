"""Tasks of the ops-alerts flow: measure the five figures, store which alerts flipped, publish.

Nothing is cached and nothing retried for long: the next run, a minute later, measures again.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from posegen import alerts
from posegen.db.session import session_scope
from posegen.events import emit_alert_changed

ARTIFACT_KEY = "posegen-ops-alerts"


@task(name="measure-alert-figures", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
async def measure_alert_figures() -> list[alerts.AlertStatus]:
    with session_scope() as session:
        figures = await alerts.measure(session)
    return alerts.evaluate(figures)


@task(name="record-alert-transitions", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def record_alert_transitions(statuses: list[alerts.AlertStatus]) -> list[alerts.AlertStatus]:
    with session_scope() as session:
        return alerts.record_transitions(session, statuses)


@task(name="emit-alert-events", cache_policy=NO_CACHE)
def emit_alert_events(flipped: list[alerts.AlertStatus], flow_run_id: str | None) -> None:
    for status in flipped:
        emit_alert_changed(
            name=status.name,
            triggered=status.triggered,
            value=status.value,
            threshold=status.threshold,
            text=status.text(resolved=not status.triggered),
            flow_run_id=flow_run_id,
        )


@task(name="publish-alerts-artifact", cache_policy=NO_CACHE)
async def publish_alerts_artifact(statuses: list[alerts.AlertStatus]) -> None:
    """One table per run under one key: the UI shows the latest and keeps the history."""
    rows = [
        {
            "alert": status.title,
            "value": status.shown,
            "threshold": status.limit_shown,
            "status": "TRIGGERED" if status.triggered else "ok",
            "detail": status.context,
        }
        for status in statuses
    ]
    triggered = sum(status.triggered for status in statuses)
    await acreate_table_artifact(
        key=ARTIFACT_KEY,
        table=rows,
        description=f"posegen alerts: {triggered} of {len(statuses)} triggered",
    )
