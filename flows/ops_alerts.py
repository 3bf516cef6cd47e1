"""Flow `ops-alerts`: measure the five alert figures → store which alerts flipped → publish
the table artifact → emit `posegen.alert.triggered` / `.resolved` for each flip. Every minute."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from posegen.alerts import AlertStatus
from tasks.ops_alerts import (
    emit_alert_events,
    measure_alert_figures,
    publish_alerts_artifact,
    record_alert_transitions,
)


@flow(name="ops-alerts", log_prints=True)
async def ops_alerts() -> list[AlertStatus]:
    """Evaluate every alert; returns them as evaluated. An alert that stays triggered (or
    resolved) sends nothing: only a change of state is news."""
    statuses = await measure_alert_figures()
    flipped = record_alert_transitions(statuses)
    await publish_alerts_artifact(statuses)
    emit_alert_events(flipped, flow_run.get_id())
    for status in flipped:
        print(status.text(resolved=not status.triggered))
    return statuses
