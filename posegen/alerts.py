"""The seed's five operational alerts: their figures, thresholds and triggered/resolved state.

One definition, read two ways: the `ops-alerts` flow evaluates them every minute and emits
`posegen.alert.*` events (a Prefect automation posts those to a webhook), and `/metrics`
exposes the same figures' raw series for Prometheus (deployments/prometheus/alerts.yml).
Figures come from where the truth is kept, never from one process's memory: the database
(change outcomes, the credit ledger, pose requests) and the Prefect API (queued and running
background-change runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posegen.config import Settings, get_settings
from posegen.db.community import PoseRequest, RequestStatus
from posegen.db.models import CreditTransaction, as_utc
from posegen.db.operations import AlertState
from posegen.domain.outcomes import Outcome, outcome_counts

QUEUED_STATES = (StateType.SCHEDULED, StateType.PENDING)
# A scrape or an alerts run must not hang on a Prefect API that does not answer.
PREFECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Figures:
    """The five figures, with the counts behind the two rates (operators ask "11 of what?")."""

    changes_finished: int
    changes_failed: int
    charges: int
    refunds: int
    queue_depth: int
    longest_running_seconds: float
    pending_requests: int

    @property
    def failure_rate(self) -> float:
        return self.changes_failed / self.changes_finished if self.changes_finished else 0.0

    @property
    def refund_rate(self) -> float:
        return self.refunds / self.charges if self.charges else 0.0


@dataclass(frozen=True)
class Alert:
    """One alert: fires when `figure(figures) > threshold(settings)`."""

    name: str
    title: str
    figure: Callable[[Figures], float]
    threshold: Callable[[Settings], float]
    show: Callable[[float], str]
    context: Callable[[Figures, Settings], str]


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def _count(value: float) -> str:
    return f"{value:.0f}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def _window(settings: Settings) -> str:
    return f"over the last {settings.alert_window_minutes:g} min"


ALERTS: tuple[Alert, ...] = (
    Alert(
        "background-change-failure-rate",
        "Background-change failure rate",
        lambda f: f.failure_rate,
        lambda s: s.alert_failure_rate,
        _percent,
        lambda f, s: f"{f.changes_failed} of {f.changes_finished} failed {_window(s)}",
    ),
    Alert(
        "background-change-queue-depth",
        "Background changes waiting to run",
        lambda f: f.queue_depth,
        lambda s: s.alert_queue_depth,
        _count,
        lambda f, s: "runs Scheduled or Pending",
    ),
    Alert(
        "background-change-processing-time",
        "Longest-running background change",
        lambda f: f.longest_running_seconds,
        lambda s: s.alert_processing_seconds,
        _seconds,
        lambda f, s: "a run has been Running this long",
    ),
    Alert(
        "credit-refund-rate",
        "Credit refund rate",
        lambda f: f.refund_rate,
        lambda s: s.alert_refund_rate,
        _percent,
        lambda f, s: f"{f.refunds} refunds of {f.charges} charges {_window(s)}",
    ),
    Alert(
        "pose-requests-pending",
        "Pose requests waiting for an admin",
        lambda f: f.pending_requests,
        lambda s: s.alert_pending_requests,
        _count,
        lambda f, s: "requests pending review",
    ),
)


@dataclass(frozen=True)
class AlertStatus:
    """One alert evaluated now."""

    name: str
    title: str
    value: float
    threshold: float
    triggered: bool
    shown: str
    limit_shown: str
    context: str

    def text(self, *, resolved: bool = False) -> str:
        """The one line a person reads in Slack (or wherever the webhook goes)."""
        head = "[posegen] resolved" if resolved else "[posegen] ALERT"
        return (
            f"{head}: {self.title} is {self.shown} (threshold {self.limit_shown}); {self.context}"
        )


# -- the figures ----------------------------------------------------------------------------------


def ledger_counts(session: Session, *, since: datetime | None = None) -> tuple[int, int]:
    """(charges, refunds) of credits, ever or since `since`. Free (0-credit) ones do not count:
    this is the money figure; failures of every change are the failure rate's business."""
    is_refund = CreditTransaction.refund_of.is_not(None)
    query = select(
        func.count().filter(CreditTransaction.amount < 0, CreditTransaction.refund_of.is_(None)),
        func.count().filter(is_refund, CreditTransaction.amount > 0),
    )
    if since is not None:
        query = query.where(CreditTransaction.created_at >= since)
    charges, refunds = session.execute(query).one()
    return int(charges), int(refunds)


def pending_requests(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(PoseRequest)
            .where(PoseRequest.status == RequestStatus.PENDING.value)
        )
        or 0
    )


async def background_change_runs(
    client: PrefectClient, deployment_name: str, *, now: datetime
) -> tuple[int, float]:
    """(runs Scheduled or Pending, seconds the oldest Running run has been running).

    Scoped to the background-change deployment (what the API submits to); (0, 0) while it
    does not exist yet.
    """
    try:
        deployment = await client.read_deployment_by_name(deployment_name)
    except ObjectNotFound:
        return 0, 0.0
    of_deployment = FlowRunFilterDeploymentId(any_=[deployment.id])
    queued = await client.count_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=of_deployment,
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(QUEUED_STATES))),
        )
    )
    oldest = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=of_deployment,
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
        ),
        sort=FlowRunSort.START_TIME_ASC,
        limit=1,
    )
    started = oldest[0].start_time if oldest else None
    running = (now - as_utc(started)).total_seconds() if started else 0.0
    return int(queued), max(running, 0.0)


async def prefect_figures(settings: Settings, *, now: datetime) -> tuple[int, float]:
    async with get_client() as client:
        return await asyncio.wait_for(
            background_change_runs(client, settings.deployment_background_change, now=now),
            PREFECT_TIMEOUT_SECONDS,
        )


async def measure(session: Session, *, now: datetime | None = None) -> Figures:
    """The five figures as of `now`: rates over the alert window, the rest as they stand."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    since = now - timedelta(minutes=settings.alert_window_minutes)
    outcomes = outcome_counts(session, since=since)
    charges, refunds = ledger_counts(session, since=since)
    pending = pending_requests(session)
    session.rollback()  # end the read transaction before waiting on Prefect
    queue_depth, longest_running = await prefect_figures(settings, now=now)
    return Figures(
        changes_finished=sum(outcomes.values()),
        changes_failed=outcomes[Outcome.FAILED],
        charges=charges,
        refunds=refunds,
        queue_depth=queue_depth,
        longest_running_seconds=longest_running,
        pending_requests=pending,
    )


def evaluate(figures: Figures, settings: Settings | None = None) -> list[AlertStatus]:
    settings = settings or get_settings()
    statuses = []
    for alert in ALERTS:
        value, threshold = float(alert.figure(figures)), float(alert.threshold(settings))
        statuses.append(
            AlertStatus(
                name=alert.name,
                title=alert.title,
                value=value,
                threshold=threshold,
                triggered=value > threshold,
                shown=alert.show(value),
                limit_shown=alert.show(threshold),
                context=alert.context(figures, settings),
            )
        )
    return statuses


# -- triggered / resolved ------------------------------------------------------------------------


def record_transitions(session: Session, statuses: list[AlertStatus]) -> list[AlertStatus]:
    """Store each alert's state; returns the ones whose state flipped (one event each).

    The flip is a conditional UPDATE (`WHERE triggered = <old>`), so two overlapping alert runs
    cannot both announce the same change: only the one whose UPDATE matched a row does.
    """
    known = set(session.scalars(select(AlertState.name)))
    for status in statuses:
        if status.name not in known:
            # A new alert starts resolved: its first triggered evaluation is a change.
            session.add(AlertState(name=status.name, triggered=False, value=0.0))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another run added the rows first: theirs are as good
    flipped = []
    for status in statuses:
        changed = session.execute(
            update(AlertState)
            .where(AlertState.name == status.name, AlertState.triggered.is_(not status.triggered))
            .values(triggered=status.triggered, value=status.value, changed_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            flipped.append(status)
    session.commit()
    return flipped
