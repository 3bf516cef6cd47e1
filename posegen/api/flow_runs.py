"""Submitting flow runs to Prefect deployments: the API's only way to get slow work done."""

from __future__ import annotations

import asyncio
import functools
import ssl
import uuid
import weakref
from dataclasses import dataclass, field

import certifi
import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
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
        api = await _api()
        async with asyncio.timeout(PREFECT_API_REQUEST_TIMEOUT.value()):
            await api.gate.acquire()  # in the timeout: a wait for a connection is part of it
        try:
            for attempt in range(2):
                try:
                    run = await api.client.create_flow_run_from_deployment(
                        await _deployment_id(api, name),
                        parameters=parameters,
                        idempotency_key=idempotency_key,
                        tags=["posegen", flow_name],
                    )
                    break
                except ObjectNotFound:
                    # The deployment was deleted and applied again (new id): look it up again.
                    _deployment_ids.pop((api.client.api_url, name), None)
                    if attempt:
                        raise
        finally:
            api.gate.release()
    except Exception as exc:
        raise ServiceUnavailable(unavailable, reason=type(exc).__name__) from exc
    count_flow_run_submitted(flow_name)
    return run.id


# Prefect's client allows 16 connections but keeps only 8 open: under a burst every request
# past the eighth opened a new connection and closed it afterwards. Keep all 16.
_CONNECTIONS = 16
_LIMITS = httpx.Limits(
    max_connections=_CONNECTIONS, max_keepalive_connections=_CONNECTIONS, keepalive_expiry=25
)


@dataclass
class _PrefectApi:
    """This process's way to one Prefect API on one event loop.

    Every trigger used to open a new Prefect client (building a TLS context from the whole CA
    bundle, ~50 ms of CPU) and read the deployment by name before creating the run; now one
    client stays open, and deployment ids are remembered (one lookup for a burst of first
    triggers, `lookup`). `gate` lets at most as many requests into the client as it has
    connections: httpcore's pool matches every queued request against every connection each
    time a request arrives or ends, so 100 concurrent triggers queued in it spent a fifth of
    the API's CPU there (py-spy, bench/trigger_bench.py); waiting on the gate costs nothing.
    """

    client: PrefectClient
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_CONNECTIONS))
    lookup: asyncio.Lock = field(default_factory=asyncio.Lock)


_apis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _PrefectApi]] = (
    weakref.WeakKeyDictionary()
)
_deployment_ids: dict[tuple[object, str], uuid.UUID] = {}


async def _api() -> _PrefectApi:
    """This loop's open client for the current Prefect API (tests switch APIs and loops)."""
    per_api = _apis.setdefault(asyncio.get_running_loop(), {})
    url = str(PREFECT_API_URL.value())
    api = per_api.get(url)
    if api is None:
        client = get_client(httpx_settings={"verify": _tls_context(), "limits": _LIMITS})
        await client.__aenter__()
        api = per_api[url] = _PrefectApi(client)
    return api


async def _deployment_id(api: _PrefectApi, name: str) -> uuid.UUID:
    key = (api.client.api_url, name)
    if key not in _deployment_ids:
        async with api.lookup:
            if key not in _deployment_ids:  # the burst's first lookup found it meanwhile
                _deployment_ids[key] = (await api.client.read_deployment_by_name(name)).id
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
