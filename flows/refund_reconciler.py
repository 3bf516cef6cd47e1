"""Flow `refund-reconciler`: refund every charge whose run died without refunding it.

Runs every few minutes and on demand (an automation can trigger it when a background-change
run ends Crashed, Failed or Cancelled). Refunds are unique per charge in the ledger, so this
flow, the runs' own hooks and a second reconciler can overlap and still refund exactly once.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from posegen.config import get_settings
from tasks.reconcile import find_open_charges, read_run_states, refund_dead_charges


@flow(name="refund-reconciler", log_prints=True)
async def refund_reconciler(
    grace_minutes: float = 10.0,
    lookback_hours: float = 72.0,
    running_timeout_minutes: float | None = None,
) -> list[dict[str, str | int]]:
    """Refund dead runs' charges; returns (and publishes as an artifact) what it refunded."""
    charges = find_open_charges(lookback_hours)
    run_ids = sorted({c.flow_run_id for c in charges if c.flow_run_id is not None}, key=str)
    states = await read_run_states(run_ids)
    timeout = (
        running_timeout_minutes
        if running_timeout_minutes is not None
        else get_settings().background_change_stale_minutes
    )
    refunded = refund_dead_charges(charges, states, grace_minutes, timeout)
    await create_table_artifact(
        key="refund-reconciler",
        table=refunded
        or [
            {
                "poseId": "",
                "userId": "",
                "flowRunId": "",
                "credits": 0,
                "reason": "nothing to refund",
            }
        ],
        description=f"Checked {len(charges)} open charges; refunded {len(refunded)}.",
    )
    print(f"checked {len(charges)} open charges, refunded {len(refunded)}")
    return refunded
