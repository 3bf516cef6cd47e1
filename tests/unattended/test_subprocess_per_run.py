"""`POSEGEN_WARM_WORKERS=0`: background changes served like every other deployment, one fresh
subprocess of Prefect's runner per run (no warm pool), still complete and charge once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from posegen.storage import get_storage
from tests.reliability.conftest import Owner, Runner, load_pose
from tests.reliability.test_faults import assert_charged_once
from tests.unattended.helpers import SOLID_BODY, flow_runs, submit_changes, wait_for_final


def warm_processes(machine: Runner) -> list[int]:
    """The serving process's children started by multiprocessing (the warm pool's)."""
    found = []
    for pid in machine.flow_run_processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            found.append(pid)
    return found


# Minutes on an idle machine; a loaded 2-core one (servers and warm pools booting beside
# other work) has needed more than pytest's 600 s default.
pytestmark = pytest.mark.timeout(1800)


@pytest.mark.slow
def test_a_change_completes_in_a_subprocess_of_its_own_without_a_warm_pool(
    owner_of: Callable[..., Owner], runner_of: Callable[..., Runner]
) -> None:
    owner = owner_of()
    machine = runner_of(POSEGEN_WARM_WORKERS="0")
    machine.start()
    assert not warm_processes(machine)
    (run_id,) = submit_changes(owner, SOLID_BODY)
    wait_for_final([run_id], 400, machine.log_tail)

    (run,) = flow_runs([run_id])
    assert run.state is not None and run.state.is_completed(), machine.log_tail()
    # A warm process records its pid on the run; Prefect's runner subprocess does not.
    assert run.infrastructure_pid is None and not warm_processes(machine)
    assert_charged_once(owner)
    pose = load_pose(owner)
    assert pose.status == "ready" and pose.background_changed
    assert pose.background_color == "#2E8B57"
    assert pose.image_key.endswith(f"{owner.pose_id}_bg.png")
    assert get_storage().exists(pose.image_key)
