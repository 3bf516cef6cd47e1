"""A machine lost mid-change, with nobody watching: no hook runs, no test calls the reconciler.

The warm process and its serving process are SIGKILLed while the change waits on FLUX inside
its `posegen-background-change` slot. What must then happen is the server's doing alone: the
run's heartbeats stop, the zombie automation marks it Crashed, the reconcile automation starts
the `refund-reconciler` deployment (served by the machine still up), the charge is refunded
exactly once, and the slot's lease lapses so the slot is free again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from posegen.config import get_settings
from posegen.orchestration import RECONCILE_ON_FAILURE
from tests.reliability.conftest import Owner, Runner, load_pose, run_state
from tests.reliability.test_faults import assert_refunded_once
from tests.unattended.conftest import (
    CRASHED_AFTER_SECONDS,
    HEARTBEAT_SECONDS,
    SLOT_LEASE_SECONDS,
    create_automations,
)
from tests.unattended.helpers import (
    AI_BODY,
    active_slots,
    deployment_runs,
    machine_running,
    submit_changes,
    wait_until,
)

# Minutes on an idle machine; a loaded 2-core one (servers and warm pools booting beside
# other work) has needed more than pytest's 600 s default.
pytestmark = pytest.mark.timeout(1800)


@pytest.mark.slow
def test_a_lost_machine_is_crashed_refunded_once_and_its_slot_lapses_unattended(
    owner_of: Callable[..., Owner],
    runner_of: Callable[..., Runner],
    automations: list[str],
    flux,  # type: ignore[no-untyped-def]
) -> None:
    flux.scenario = "pending_then_ready"
    flux.pending_polls = 1_000_000  # the change waits on FLUX, inside its slot, until killed
    owner = owner_of()
    machines = [runner_of(POSEGEN_WARM_WORKERS="1"), runner_of(POSEGEN_WARM_WORKERS="1")]
    for machine in machines:
        machine.launch()
    for machine in machines:
        machine.wait_served()
    create_automations(automations, machines[0])  # as `posegen up` does once it is served
    (run_id,) = submit_changes(owner, AI_BODY)
    wait_until(
        lambda: len(flux.requests_to("/v1/get_result")) >= 3,
        90,
        "the change polled",
        machines[0].log_tail,
    )
    assert run_state(run_id) == "RUNNING" and active_slots() == 1
    lost = machine_running(run_id, machines)
    survivor = next(machine for machine in machines if machine is not lost)

    lost.kill_everything()  # the serving process and its warm process: no hook can run
    killed_at = time.monotonic()
    seen: dict[str, float] = {}
    checks = {
        "crashed": lambda: run_state(run_id) == "CRASHED",
        "refunded": lambda: load_pose(owner).status == "failed",
        "slot free": lambda: active_slots() == 0,
    }

    def everything_seen() -> bool:
        for what, check in checks.items():
            if what not in seen and check():
                seen[what] = time.monotonic() - killed_at
        return len(seen) == len(checks)

    wait_until(everything_seen, 180, f"all of {list(checks)} (seen: {seen})", survivor.log_tail)
    print(f"\nafter the kill: {', '.join(f'{what} {t:.0f} s' for what, t in seen.items())}")
    # The zombie automation: within the silence window of the last beat (plus its evaluation).
    assert seen["crashed"] <= HEARTBEAT_SECONDS + CRASHED_AFTER_SECONDS + 10
    # The repossessor: within the lease of the last renewal (plus its loop).
    assert seen["slot free"] <= SLOT_LEASE_SECONDS + 10
    assert_refunded_once(owner)
    pose = load_pose(owner)
    assert "refunded" in (pose.error_message or "")
    assert pose.image_key == pose.original_image_key and not pose.background_changed

    reconciler_runs = deployment_runs(get_settings().deployment_refund_reconciler)
    assert reconciler_runs, "nothing started the reconciler"
    # The server's scheduler is off here: every reconciler run is the automation's.
    assert {run.created_by.type for run in reconciler_runs if run.created_by} == {"AUTOMATION"}
    assert all(run.parameters == RECONCILE_ON_FAILURE for run in reconciler_runs)
    assert_refunded_once(owner)  # later reconciler passes found nothing more to do
