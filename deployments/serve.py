"""Serve every posegen deployment from one runner process (what `make run` starts).

Each flow run starts in a fresh subprocess of this runner, so a crash or a kill of one run
cannot take the others down; the hooks and the ledger take care of its credits.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.background_change import background_change
from posegen.config import get_settings
from posegen.orchestration import ensure_limits_sync


def build_deployments() -> list[RunnerDeployment]:
    return [
        background_change.to_deployment(
            name="background-change",
            description="Change one pose's background (AI prompt, solid colour or upload).",
            tags=["posegen", "background-change"],
        ),
    ]


def main() -> None:
    ensure_limits_sync()
    serve(*build_deployments(), limit=get_settings().runner_limit)


if __name__ == "__main__":
    main()
