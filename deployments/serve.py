"""Serve every posegen deployment from one runner process (what `make run` starts).

Each flow run starts in a fresh subprocess of this runner, so a crash or a kill of one run
cannot take the others down; the hooks and the ledger take care of its credits.
"""

from __future__ import annotations

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.background_change import background_change
from flows.refund_reconciler import refund_reconciler
from posegen.config import get_settings
from posegen.orchestration import ensure_limits_sync


def deployment_name(full_name: str) -> str:
    """`flow-name/deployment-name` → the deployment part (settings name the full form)."""
    return full_name.split("/", 1)[1]


def build_deployments() -> list[RunnerDeployment]:
    settings = get_settings()
    return [
        background_change.to_deployment(
            name=deployment_name(settings.deployment_background_change),
            description="Change one pose's background (AI prompt, solid colour or upload).",
            tags=["posegen", "background-change"],
        ),
        refund_reconciler.to_deployment(
            name="refund-reconciler",
            description="Refund charges whose background-change run died without refunding.",
            tags=["posegen", "credits"],
            interval=300,
        ),
    ]


def main() -> None:
    ensure_limits_sync()
    serve(*build_deployments(), limit=get_settings().runner_limit)


if __name__ == "__main__":
    main()
