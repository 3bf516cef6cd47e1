"""Speed of the `selfie` model beside u2netp: raw inference, mask, rembg.remove, background change.

    NUMBA_CACHE_DIR=.posegen/numba-cache REMBG_HOME=.posegen/models \\
        .venv/bin/python bench/selfie_bench.py [--rounds 7]

Same image for both models (bench/change_bench.py's 1024x1536 person photo), same process,
interleaved round by round so a busy machine slows both alike; each line prints median
[min-max] and the ratio of medians u2netp / selfie (how many times faster selfie is).

- raw inference: `InferenceSession.run` on a fixed tensor at each model's input size
  (u2netp 320x320; selfie 256x256, and its landscape variant 256x144 for reference).
- mask: posegen's `segment()` on the photo (shrink, inference, mask upscale).
- rembg.remove: what a user would write with rembg, `remove(photo, session=...)`.
- background change: posegen's compute steps as the flow's tasks call them
  (`remove_background` → `build_background` → `composite_pose`, solid colour, local storage,
  the mask deleted before every round), the model chosen by the `POSEGEN_REMBG_MODEL` setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from change_bench import PosegenSide, backdrop_photo, person_photo, png_bytes, summary, timed
from harness import iou

from posegen.config import reset_settings
from posegen.imaging.fetch_models import fetch_model
from posegen.imaging.segmentation import get_session, segment

MODELS = ("u2netp", "selfie")


def interleaved(rounds: int, runs: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Each callable once per round, in turn; the first call of each (warm-up) untimed."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            times[label].append(timed(run))
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n== {title}")
    for label, values in times.items():
        print(f"   {label:<18}: {summary(values)}")
    u2netp, selfie = statistics.median(times["u2netp"]), statistics.median(times["selfie"])
    ratios = [u / s for u, s in zip(times["u2netp"], times["selfie"], strict=True)]
    print(
        f"   selfie is {u2netp / selfie:.1f}x faster "
        f"(median of per-round ratios {statistics.median(ratios):.1f}x)"
    )


def raw_run(session: object, height: int, width: int) -> Callable[[], object]:
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    tensor = np.random.default_rng(1).random((1, 3, height, width), dtype=np.float32)
    return lambda: session.run(None, {name: tensor})  # type: ignore[attr-defined]


def use_model(name: str) -> None:
    """Select the model the way a deployment does: the POSEGEN_REMBG_MODEL setting."""
    os.environ["POSEGEN_REMBG_MODEL"] = name
    reset_settings()


def main() -> None:
    from rembg import remove

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for model in MODELS:
        fetch_model(model)

    photo = person_photo()
    data = png_bytes(photo)
    print(
        f"photo {photo.width}x{photo.height}; cores {os.cpu_count()}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    loads = {}
    for model in MODELS:
        start = time.perf_counter()
        get_session(model)
        loads[model] = time.perf_counter() - start
    print(
        "session load (get_session, rembg already imported): "
        + ", ".join(f"{m} {s:.2f} s" for m, s in loads.items())
    )
    u2netp, selfie = get_session("u2netp"), get_session("selfie")

    report(
        "raw inference",
        interleaved(
            args.rounds,
            {
                "u2netp": raw_run(u2netp.inner_session, 320, 320),
                "selfie": raw_run(selfie.inner_session, 256, 256),
                "selfie landscape": raw_run(selfie.landscape_session, 144, 256),  # type: ignore[attr-defined]
            },
        ),
    )
    report(
        "mask: posegen segment() on the photo",
        interleaved(args.rounds, {m: lambda m=m: segment(photo, model=m) for m in MODELS}),
    )
    report(
        "rembg.remove(photo, session=...)",
        interleaved(
            args.rounds, {m: lambda s=get_session(m): remove(photo, session=s) for m in MODELS}
        ),
    )

    with tempfile.TemporaryDirectory(prefix="posegen-selfie-bench-") as folder:
        side = PosegenSide(Path(folder), data, photo.size, png_bytes(backdrop_photo(*photo.size)))
        steps: dict[str, dict[str, list[float]]] = {
            m: {"remove_background": [], "build_background": [], "composite_pose": []}
            for m in MODELS
        }

        def change(model: str) -> None:
            use_model(model)
            side.change("solid_color", steps[model])

        times = interleaved(args.rounds, {m: lambda m=m: change(m) for m in MODELS})
        report("background change compute (solid colour, remove + build + composite)", times)
        for model in MODELS:
            for step, values in steps[model].items():
                print(f"   {model:<7} {step:<18}: {summary(values[1:])}")

    print(
        f"\nmask IoU selfie vs u2netp on this photo (>=128): "
        f"{iou(segment(photo, model='selfie'), segment(photo, model='u2netp')):.4f}"
    )
    print(f"load average at end {os.getloadavg()[0]:.1f} (machine shared with other work)")


if __name__ == "__main__":
    main()
