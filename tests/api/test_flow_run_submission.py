"""How the API hands runs to Prefect under a burst (posegen.api.flow_runs, issue 16)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient, get_client

from posegen.api import flow_runs
from posegen.domain.background import BackgroundChange, ChangeTicket, charge_key

BURST = 40  # well past the client's 16 connections


def _ticket() -> ChangeTicket:
    request_id = uuid.uuid4()
    return ChangeTicket(
        pose_id=uuid.uuid4(),
        generation_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        request_id=request_id,
        charge_key=charge_key(request_id),
        credit_charged=10,
        credit_balance=90,
        output_key="poses/x/y_bg.png",
        previous_status="ready",
        previous_error=None,
        newly_charged=True,
    )


def test_a_burst_of_first_triggers_reads_the_deployment_once_and_queues_outside_the_client(
    background_deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty triggers at once on a fresh process: one deployment lookup (not forty), never more
    requests inside the Prefect client than it has connections, and forty distinct runs."""
    monkeypatch.setattr(flow_runs, "_deployment_ids", {})
    lookups: list[str] = []
    inside = {"now": 0, "most": 0}
    read = PrefectClient.read_deployment_by_name
    create = PrefectClient.create_flow_run_from_deployment

    async def counting_read(self: PrefectClient, name: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(name)
        return await read(self, name, *args, **kwargs)

    async def counting_create(self: PrefectClient, *args: Any, **kwargs: Any) -> Any:
        inside["now"] += 1
        inside["most"] = max(inside["most"], inside["now"])
        try:
            return await create(self, *args, **kwargs)
        finally:
            inside["now"] -= 1

    monkeypatch.setattr(PrefectClient, "read_deployment_by_name", counting_read)
    monkeypatch.setattr(PrefectClient, "create_flow_run_from_deployment", counting_create)
    change = BackgroundChange(background_mode="solid_color", background_color="#ffffff")
    tickets = [_ticket() for _ in range(BURST)]

    async def burst() -> list[uuid.UUID]:
        return await asyncio.gather(
            *(flow_runs.submit_background_change(ticket, change) for ticket in tickets)
        )

    run_ids = asyncio.run(burst())
    assert len(lookups) == 1, lookups
    assert 1 < inside["most"] <= flow_runs._CONNECTIONS, inside
    assert len(set(run_ids)) == BURST
    with get_client(sync_client=True) as client:
        runs = {run_id: client.read_flow_run(run_id) for run_id in run_ids}
    by_request = {str(run.parameters["request_id"]): run.id for run in runs.values()}
    sent = zip(tickets, run_ids, strict=True)
    assert by_request == {str(ticket.request_id): run_id for ticket, run_id in sent}
