"""Submitting flow runs to Prefect deployments: the API's only way to get slow work done."""

from __future__ import annotations

import uuid

from prefect.client.orchestration import get_client

from posegen.api.metrics import count_flow_run_submitted
from posegen.config import get_settings
from posegen.domain.background import BackgroundChange, ChangeTicket
from posegen.domain.exports import ExportRequest
from posegen.errors import ServiceUnavailable


async def submit_background_change(ticket: ChangeTicket, change: BackgroundChange) -> uuid.UUID:
    """Create a run of the `background-change` deployment; one run per request id.

    The idempotency key makes a repeated submission (client retry) return the same run.
    Any failure is ServiceUnavailable so the caller refunds at once.
    """
    return await _submit(
        get_settings().deployment_background_change,
        {
            "pose_id": str(ticket.pose_id),
            "user_id": str(ticket.user_id),
            "request_id": str(ticket.request_id),
            # The deployment's parameter schema follows the flow signature: camelCase.
            "change": change.model_dump(mode="json", by_alias=True),
        },
        idempotency_key=ticket.charge_key,
        unavailable="The background change could not be started right now; your credits were "
        "refunded. Please try again in a minute.",
    )


async def submit_export(
    generation_id: uuid.UUID, request: ExportRequest, idempotency_key: str | None = None
) -> uuid.UUID:
    """Create a run of the `multi-format-export` deployment; exports cost nothing, so a failed
    submission only needs a 503. A repeated idempotency key returns the first run."""
    return await _submit(
        get_settings().deployment_multi_format_export,
        {
            "generation_id": str(generation_id),
            "request": request.model_dump(mode="json", by_alias=True),
        },
        idempotency_key=idempotency_key,
        unavailable="The export could not be started right now. Please try again in a minute.",
    )


async def _submit(
    name: str, parameters: dict[str, object], *, idempotency_key: str | None, unavailable: str
) -> uuid.UUID:
    """One run of deployment `flow/deployment`; any failure is ServiceUnavailable(unavailable)."""
    flow_name = name.split("/", 1)[0]
    try:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(name)
            run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters=parameters,
                idempotency_key=idempotency_key,
                tags=["posegen", flow_name],
            )
    except Exception as exc:
        raise ServiceUnavailable(unavailable, reason=type(exc).__name__) from exc
    count_flow_run_submitted(flow_name)
    return run.id
