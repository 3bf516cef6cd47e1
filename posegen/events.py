"""posegen's Prefect events: each `posegen.*` event's name, resources and one payload shape.

Every place that emits an event calls the function here, so a client sees one shape per event
whichever code path (flow, hook, reconciler, admin action) sent it. `GET /events` (SSE) and
`GET /ws` (the seed's WebSocket channel, message types in WEBSOCKET_MESSAGE_TYPES) relay them.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect.events import emit_event

# Every posegen event name starts with this; clients see names without it.
EVENT_PREFIX = "posegen."

EVENT_BACKGROUND_COMPLETED = "posegen.background-change.completed"
EVENT_BACKGROUND_FAILED = "posegen.background-change.failed"
EVENT_EXPORT_COMPLETED = "posegen.export.completed"
EVENT_EXPORT_FAILED = "posegen.export.failed"
# One per pose as the run finishes it, so a page can show how far an export has come.
EVENT_EXPORT_PROGRESS = "posegen.export.progress"
EVENT_POSE_REQUEST_STATUS_CHANGED = "posegen.pose-request.status-changed"
# Operators', not users': the `ops-alerts` flow sends one when an alert fires and one when it
# clears (posegen/alerts.py); an automation posts them to POSEGEN_ALERT_WEBHOOK_URL.
EVENT_ALERT_TRIGGERED = "posegen.alert.triggered"
EVENT_ALERT_RESOLVED = "posegen.alert.resolved"

# The seed's WebSocket channel (`GET /ws`) names each event's message `type` like this; the
# message carries the same payload as the SSE stream's `data.payload`.
WEBSOCKET_MESSAGE_TYPES: dict[str, str] = {
    EVENT_BACKGROUND_COMPLETED: "background_change_complete",
    EVENT_BACKGROUND_FAILED: "background_change_failed",
    EVENT_EXPORT_COMPLETED: "export_complete",
    EVENT_EXPORT_FAILED: "export_failed",
    EVENT_EXPORT_PROGRESS: "export_progress",
    EVENT_POSE_REQUEST_STATUS_CHANGED: "pose_request_status_changed",
}


# -- resources ------------------------------------------------------------------------------------


def pose_resource(pose_id: object) -> dict[str, str]:
    return {"prefect.resource.id": f"posegen.pose.{pose_id}", "prefect.resource.role": "pose"}


def generation_resource(generation_id: object) -> dict[str, str]:
    return {
        "prefect.resource.id": f"posegen.generation.{generation_id}",
        "prefect.resource.role": "generation",
    }


def pose_request_resource(request_id: object) -> dict[str, str]:
    return {
        "prefect.resource.id": f"posegen.pose-request.{request_id}",
        "prefect.resource.role": "pose-request",
    }


def alert_resource(name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"posegen.alert.{name}", "prefect.resource.role": "alert"}


def user_resource_id(user_id: object) -> str:
    """The related resource that marks an event as this user's (GET /events relays by it)."""
    return f"posegen.user.{user_id}"


def user_related(user_id: object) -> dict[str, str]:
    return {"prefect.resource.id": user_resource_id(user_id), "prefect.resource.role": "user"}


def flow_run_related(flow_run_id: object) -> dict[str, str]:
    return {
        "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
        "prefect.resource.role": "flow-run",
    }


def _related(user_id: object, flow_run_id: object | None) -> list[dict[str, str]]:
    related = [user_related(user_id)]
    if flow_run_id is not None:
        related.append(flow_run_related(flow_run_id))
    return related


# -- background change ----------------------------------------------------------------------------


def emit_background_change_completed(
    *,
    pose_id: uuid.UUID,
    user_id: uuid.UUID,
    generation_id: uuid.UUID,
    request_id: uuid.UUID,
    image_url: str,
    image_key: str,
    background_mode: str,
    credit_charged: int,
    flow_run_id: object | None = None,
) -> None:
    emit_event(
        event=EVENT_BACKGROUND_COMPLETED,
        resource=pose_resource(pose_id),
        related=_related(user_id, flow_run_id),
        payload={
            "poseId": str(pose_id),
            "generationId": str(generation_id),
            "requestId": str(request_id),
            "imageUrl": image_url,
            "imageKey": image_key,
            "backgroundMode": background_mode,
            "creditCharged": credit_charged,
        },
    )


def emit_background_change_failed(
    *,
    pose_id: uuid.UUID,
    user_id: uuid.UUID,
    request_id: uuid.UUID,
    error_message: str,
    credit_refunded: int,
    state: str | None,
    reconciled: bool,
    flow_run_id: object | None = None,
) -> None:
    """Sent by the flow's failure hooks (`reconciled` false) and the reconciler (true).

    `state` is the run's Prefect state type as the sender saw it (None: the run is gone).
    """
    emit_event(
        event=EVENT_BACKGROUND_FAILED,
        resource=pose_resource(pose_id),
        related=_related(user_id, flow_run_id),
        payload={
            "poseId": str(pose_id),
            "requestId": str(request_id),
            "errorMessage": error_message,
            "state": state,
            "creditRefunded": credit_refunded,
            "reconciled": reconciled,
        },
    )


# -- export ---------------------------------------------------------------------------------------


def emit_export_progress(
    *,
    generation_id: uuid.UUID,
    user_id: uuid.UUID,
    pose_id: uuid.UUID,
    poses_done: int,
    poses_total: int,
    flow_run_id: object | None = None,
) -> None:
    emit_event(
        event=EVENT_EXPORT_PROGRESS,
        resource=generation_resource(generation_id),
        related=_related(user_id, flow_run_id),
        payload={
            "generationId": str(generation_id),
            "poseId": str(pose_id),
            "posesDone": poses_done,
            "posesTotal": poses_total,
            "flowRunId": str(flow_run_id) if flow_run_id else None,
        },
    )


def emit_export_finished(
    *,
    generation_id: uuid.UUID,
    user_id: uuid.UUID,
    failed: bool,
    payload: dict[str, Any],
    flow_run_id: object | None = None,
) -> None:
    """`completed` when every pose exported; `failed` when any did not; the payload is
    `ExportSummary.payload` (one shape for both)."""
    emit_event(
        event=EVENT_EXPORT_FAILED if failed else EVENT_EXPORT_COMPLETED,
        resource=generation_resource(generation_id),
        related=_related(user_id, flow_run_id),
        payload=payload,
    )


# -- pose requests --------------------------------------------------------------------------------


def emit_pose_request_status_changed(
    *,
    request_id: uuid.UUID,
    requester_id: uuid.UUID,
    from_status: str,
    to_status: str,
    notes: str | None,
    admin_id: uuid.UUID,
) -> None:
    emit_event(
        event=EVENT_POSE_REQUEST_STATUS_CHANGED,
        resource=pose_request_resource(request_id),
        related=[user_related(requester_id)],
        payload={
            "requestId": str(request_id),
            "from": from_status,
            "to": to_status,
            "notes": notes,
            "adminId": str(admin_id),
        },
    )


# -- operational alerts ---------------------------------------------------------------------------


def emit_alert_changed(
    *,
    name: str,
    triggered: bool,
    value: float,
    threshold: float,
    text: str,
    flow_run_id: object | None = None,
) -> None:
    """`text` is the whole human-readable line: the webhook automation posts it as is."""
    emit_event(
        event=EVENT_ALERT_TRIGGERED if triggered else EVENT_ALERT_RESOLVED,
        resource=alert_resource(name),
        related=[flow_run_related(flow_run_id)] if flow_run_id is not None else [],
        payload={"alert": name, "value": value, "threshold": threshold, "text": text},
    )
