"""Submitting flow runs to Prefect deployments: the API's only way to get slow work done."""

from __future__ import annotations

import asyncio
import functools
import ssl
import uuid
import weakref

import certifi
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import (
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
)

from posegen.api.metrics import count_flow_run_submitted
from posegen.config import get_settings
from posegen.domain.background import BackgroundChange, ChangeTicket
from posegen.domain.export_requests import ExportRequest
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
    generation_id: uuid.UUID,
    request: ExportRequest,
    idempotency_key: str | None = None,
    request_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Create a run of the `multi-format-export` deployment (a failed submission is a 503; the
    caller refunds a paid export's charges, `request_id`). A repeated idempotency key returns
    the first run."""
    parameters: dict[str, object] = {
        "generation_id": str(generation_id),
        "request": request.model_dump(mode="json", by_alias=True),
    }
    if request_id is not None:
        parameters["request_id"] = str(request_id)
    return await _submit(
        get_settings().deployment_multi_format_export,
        parameters,
        idempotency_key=idempotency_key,
        unavailable="The export could not be started right now. Please try again in a minute.",
    )


async def _submit(
    name: str, parameters: dict[str, object], *, idempotency_key: str | None, unavailable: str
) -> uuid.UUID:
    """One run of deployment `flow/deployment`; any failure is ServiceUnavailable(unavailable)."""
    flow_name = name.split("/", 1)[0]
    try:
        client = await _client()
        for attempt in range(2):
            try:
                run = await client.create_flow_run_from_deployment(
                    await _deployment_id(client, name),
                    parameters=parameters,
                    idempotency_key=idempotency_key,
                    tags=["posegen", flow_name],
                )
                break
            except ObjectNotFound:
                # The deployment was deleted and applied again (new id): look it up once more.
                _deployment_ids.pop((client.api_url, name), None)
                if attempt:
                    raise
    except Exception as exc:
        raise ServiceUnavailable(unavailable, reason=type(exc).__name__) from exc
    count_flow_run_submitted(flow_name)
    return run.id


# Every trigger used to open a new Prefect client (building a TLS context from the whole CA
# bundle, ~50 ms of CPU) and read the deployment by name before creating the run. Now one
# client per event loop and Prefect API stays open, and deployment ids are remembered.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, PrefectClient]] = (
    weakref.WeakKeyDictionary()
)
_deployment_ids: dict[tuple[object, str], uuid.UUID] = {}
# Prefect's client allows 16 connections but keeps only 8 open: under a burst every request
# past the eighth opened a new connection and closed it afterwards. Keep all 16.
_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=25)


async def _client() -> PrefectClient:
    """This loop's open client for the current Prefect API (tests switch APIs and loops)."""
    per_api = _clients.setdefault(asyncio.get_running_loop(), {})
    api = str(PREFECT_API_URL.value())
    client = per_api.get(api)
    if client is None:
        client = get_client(httpx_settings={"verify": _tls_context(), "limits": _LIMITS})
        await client.__aenter__()
        per_api[api] = client
    return client


async def _deployment_id(client: PrefectClient, name: str) -> uuid.UUID:
    key = (client.api_url, name)
    if key not in _deployment_ids:
        _deployment_ids[key] = (await client.read_deployment_by_name(name)).id
    return _deployment_ids[key]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context Prefect's client would build for itself, built once per process."""
    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
