"""Memory of a warm process over hundreds of background changes (issues 7 and 16).

    REMBG_HOME=.posegen/models .venv/bin/python bench/memory_bench.py \\
        [--changes 200] [--model u2netp|selfie] [--db postgres]

`python -m deployments.serve` with one warm process (`POSEGEN_WARM_WORKERS=1`), so every change
runs in the same process; the API in this process (TestClient, per-user rate limit off);
changes submitted one after another, each on a fresh 1024x1536 pose (a first change segments),
each waited for through its completion event. Prints the warm process's RSS (VmRSS) and the
serving process's after the first change and every 50; then which of rembg's matting stack
(rembg, scipy, scikit-image, pymatting, numba) the warm process has mapped, and the IoU of the
mask the warm process stored for the last pose against `rembg.remove(..., session=...,
only_mask=True)` on the same photo (rembg's own u2netp session; for `selfie`, which rembg does
not ship, posegen's selfie session handed to rembg.remove).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_bench import _HOME, BASE, CompletionEvents, person_png, start_runner
from harness import stop_process

# Shared-object folders of the packages `import rembg` loads and posegen's warm path must not.
REMBG_ONLY_PACKAGES = ("rembg", "scipy", "skimage", "pymatting", "numba", "llvmlite")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def mapped_packages(pid: int) -> list[str]:
    """Which of REMBG_ONLY_PACKAGES have files mapped into process `pid` (imported ones do)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in REMBG_ONLY_PACKAGES if f"/site-packages/{name}/" in maps]


def mask_iou_against_rembg(photo: bytes, stored_mask: bytes, model: str) -> float:
    """The warm process's stored mask against rembg.remove's own for the same model and photo."""
    import io

    from harness import iou
    from PIL import Image
    from rembg import new_session, remove

    from posegen.imaging.segmentation import get_session

    image = Image.open(io.BytesIO(photo)).convert("RGB")
    session = get_session("selfie") if model == "selfie" else new_session(model)
    theirs = remove(image, session=session, only_mask=True)
    return iou(Image.open(io.BytesIO(stored_mask)), theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--every", type=int, default=50, help="print RSS every N changes")
    parser.add_argument("--model", default="u2netp", choices=["u2netp", "selfie"])
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    args = parser.parse_args()
    os.environ["POSEGEN_RATE_LIMIT_ENABLED"] = "false"
    os.environ["POSEGEN_REMBG_MODEL"] = args.model

    from harness import prefect_api

    from posegen.db.migrate import upgrade

    with prefect_api(args.db) as api:
        upgrade(os.environ["POSEGEN_DATABASE_URL"])
        from fastapi.testclient import TestClient
        from prefect.client.orchestration import get_client

        from posegen.api.app import create_app
        from posegen.auth import create_token
        from posegen.config import reset_settings
        from posegen.db.models import Pose
        from posegen.db.session import session_scope
        from posegen.domain.poses import import_generation
        from posegen.domain.users import create_user
        from posegen.orchestration import ensure_limits_sync
        from posegen.storage import get_storage

        deployment = f"background-change/memory-{uuid.uuid4().hex[:8]}"
        os.environ["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"] = deployment
        reset_settings()
        ensure_limits_sync()
        events = CompletionEvents(api)
        runner = start_runner(
            api, deployment, "warm", 1, _HOME / "memory-runner.log", workers=1, model=args.model
        )
        photo = person_png()
        with session_scope() as session:
            user_id = create_user(session, "memory@example.com", opening_credits=10**7).id
        headers = {"Authorization": f"Bearer {create_token(user_id, 'USER')}"}
        body = {"backgroundMode": "solid_color", "backgroundColor": "#1E90FF"}
        warm_pid = None
        started = time.monotonic()
        try:
            with TestClient(create_app()) as client:
                for done in range(1, args.changes + 1):
                    with session_scope() as session:
                        pose_id = import_generation(session, get_storage(), user_id, [photo])
                        pose_id = pose_id.poses[0].id
                    response = client.post(
                        f"{BASE}/poses/{pose_id}/background", json=body, headers=headers
                    )
                    assert response.status_code == 202, response.text
                    events.wait(str(pose_id))
                    if warm_pid is None:
                        with get_client(sync_client=True) as prefect:
                            run = prefect.read_flow_run(uuid.UUID(response.json()["flowRunId"]))
                        warm_pid = int(run.infrastructure_pid or 0)
                    if done == 1 or done % args.every == 0 or done == args.changes:
                        print(
                            f"after {done:4} changes: warm process {rss_mb(warm_pid):7.1f} MB, "
                            f"serving process {rss_mb(runner.pid):6.1f} MB "
                            f"({time.monotonic() - started:5.0f} s)",
                            flush=True,
                        )
            loaded = mapped_packages(warm_pid) if warm_pid else ["(no warm process seen)"]
        finally:
            stop_process(runner, timeout=30)
        print(
            f"model {args.model}; warm process maps of {', '.join(REMBG_ONLY_PACKAGES)}: "
            f"{', '.join(loaded) or 'none'}"
        )
        with session_scope() as session:
            mask_key = session.get(Pose, pose_id).mask_key
        score = mask_iou_against_rembg(photo, get_storage().read_bytes(mask_key), args.model)
        print(f"mask IoU, warm process vs rembg.remove(only_mask=True), threshold 128: {score:.4f}")


if __name__ == "__main__":
    main()
