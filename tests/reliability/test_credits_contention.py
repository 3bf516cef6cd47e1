"""Credits under contention: one user, 200 simultaneous background changes, a balance for 50.

The API runs on a real uvicorn server (PostgreSQL, S3 endpoint) and the requests arrive at once
over HTTP, so the conditional UPDATE and the unique idempotency key are what stand between the
user and an overdraft — not a lock in the test. The accepted runs go to a deployment nobody
serves, then a few are run to completion in this process and the rest are cancelled, so the
reconciler has to refund them: every accepted run ends completed or refunded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Cancelled

from posegen.api.app import create_app
from posegen.api.paths import BASE_PATH
from posegen.auth import create_token
from tests.reliability.conftest import Owner, assert_invariant, load_pose, reconcile, run_state
from tests.sse import serve_api

REQUESTS = 200
COVERED = 50
COST = 10
RUN_TO_COMPLETION = 3
SOLID = {"backgroundMode": "solid_color", "backgroundColor": "#20B2AA"}


async def fire(
    base: str, token: str, pose_ids: list[uuid.UUID], timeout: float = 120
) -> list[httpx.Response]:
    """One request per pose, all in flight together (one connection each)."""
    limits = httpx.Limits(max_connections=len(pose_ids), max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        return await asyncio.gather(
            *(
                client.post(f"{BASE_PATH}/poses/{pose_id}/background", json=SOLID, headers=headers)
                for pose_id in pose_ids
            )
        )


def _finish(run_ids: list[uuid.UUID], cancel_ids: list[uuid.UUID]) -> list[str]:
    """Run some accepted runs here, as the runner would (same run, same parameters), and
    cancel the others before they start (no hook can fire: only the reconciler can refund)."""
    from flows.background_change import background_change

    async def go() -> list[str]:
        async with get_client() as client:
            for run_id in cancel_ids:
                await client.set_flow_run_state(run_id, Cancelled(), force=True)
            states = []
            for run_id in run_ids:
                flow_run = await client.read_flow_run(run_id)
                state = await run_flow(background_change, flow_run=flow_run, return_type="state")
                states.append(state.type.value)
            return states

    return asyncio.run(go())


def test_200_concurrent_changes_accept_exactly_what_the_balance_covers(
    owner_of: Callable[..., Owner], unserved_deployment: str
) -> None:
    owner = owner_of(credits=COVERED * COST, poses=REQUESTS)
    token = create_token(owner.user_id, "USER")

    with serve_api(create_app()) as base:
        started = time.monotonic()
        responses = asyncio.run(fire(base, token, owner.pose_ids))
        elapsed = time.monotonic() - started

    statuses = Counter(response.status_code for response in responses)
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s: {dict(statuses)}")
    assert statuses == {202: COVERED, 403: REQUESTS - COVERED}, [
        r.text for r in responses if r.status_code not in (202, 403)
    ][:5]
    refused = [r.json() for r in responses if r.status_code == 403]
    assert all(body["error"] == "InsufficientCredits" for body in refused)
    assert all(body["required"] == COST and body["balance"] < COST for body in refused)

    state = assert_invariant(owner)
    assert state.balance == 0
    assert len(state.charges) == COVERED and not state.refunds
    assert sum(charge.amount for charge in state.charges) == -COVERED * COST
    print(f"balance {owner.opening} → {state.balance}, ledger sum after opening {-COVERED * COST}")

    accepted = {
        uuid.UUID(r.json()["poseId"]): uuid.UUID(r.json()["flowRunId"])
        for r in responses
        if r.status_code == 202
    }
    assert len(set(accepted.values())) == COVERED  # one run per accepted request
    assert all(r.json()["creditCharged"] == COST for r in responses if r.status_code == 202)
    # A refused request claimed its pose for a moment; it must have put it back.
    for pose_id in set(owner.pose_ids) - accepted.keys():
        assert load_pose(owner, pose_id).status == "ready"

    runs = list(accepted.items())
    completed = runs[:RUN_TO_COMPLETION]
    cancelled = runs[RUN_TO_COMPLETION:]
    started = time.monotonic()
    states = _finish([run for _, run in completed], [run for _, run in cancelled])
    assert states == ["COMPLETED"] * RUN_TO_COMPLETION
    refunded = reconcile()
    print(
        f"{RUN_TO_COMPLETION} runs completed in process, {len(cancelled)} cancelled and "
        f"refunded by the reconciler in {time.monotonic() - started:.1f} s"
    )

    assert {r["flowRunId"] for r in refunded} >= {str(run) for _, run in cancelled}
    for pose_id, run_id in completed:
        pose = load_pose(owner, pose_id)
        assert pose.status == "ready" and pose.background_changed, pose.error_message
        assert run_state(run_id) == "COMPLETED"
    for pose_id, _ in cancelled:
        pose = load_pose(owner, pose_id)
        assert pose.status == "failed" and "refunded" in (pose.error_message or "")
    final = assert_invariant(owner)
    assert len(final.charges) == COVERED and len(final.refunds) == len(cancelled)
    assert final.balance == len(cancelled) * COST
    # Nothing left to refund: a second pass changes nothing.
    assert not [r for r in reconcile() if r["userId"] == str(owner.user_id)]
    assert assert_invariant(owner).balance == len(cancelled) * COST
