"""Prometheus metrics of the API process: requests, credits charged and refunded, runs submitted,
and the series the five alerts need (deployments/prometheus/alerts.yml).

Everything lives in posegen's own registry (not prometheus_client's global one, where Prefect's
client registers its metrics too), so `GET /metrics` exposes exactly the `posegen_*` series.
Two kinds of series:
- in-process counters (`posegen_http_*`, `posegen_credits_charged`, ...) count what *this API
  process* did;
- the alert series are read at scrape time from where the truth is kept (`AlertSeriesCollector`):
  changes end, and credits are refunded, in flow-run processes, and several API processes serve
  one database, so a counter kept in memory here would miss them or disagree between processes.
  Every API process reports the same values; rules aggregate with `max` across instances.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prefect.utilities.asyncutils import run_coro_as_sync
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen import alerts
from posegen.config import get_settings
from posegen.db.session import session_scope
from posegen.domain.outcomes import DURATION_BUCKETS, duration_histogram, outcome_counts

REGISTRY = CollectorRegistry()
ProcessCollector(namespace="posegen", registry=REGISTRY)

HTTP_REQUESTS = Counter(
    "posegen_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "posegen_http_request_duration_seconds",
    "Time from request to the end of the response, by method and route template.",
    ["method", "route"],
    registry=REGISTRY,
)
CREDITS_CHARGED = Counter(
    "posegen_credits_charged",
    "Credits charged by the API, by what they paid for.",
    ["reason"],
    registry=REGISTRY,
)
CREDITS_REFUNDED = Counter(
    "posegen_credits_refunded",
    "Credits the API refunded at once (a run that could not be submitted), by what they paid for.",
    ["reason"],
    registry=REGISTRY,
)
FLOW_RUNS_SUBMITTED = Counter(
    "posegen_flow_runs_submitted",
    "Flow runs the API submitted to Prefect, by flow name.",
    ["flow"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "posegen_rate_limited",
    "Requests refused with 429 by the per-user rate limits, by bucket.",
    ["bucket"],
    registry=REGISTRY,
)


class AlertSeriesCollector(Collector):
    """The alerts' raw series, read from the database and the Prefect API at each scrape.

    A source that does not answer leaves its series out (Prometheus then has no sample rather
    than a wrong zero) and shows as `posegen_alert_source_up{source=...} 0`.
    """

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "posegen_alert_source_up",
            "Whether the last scrape could read the alerts' source (database, prefect).",
            labels=["source"],
        )
        try:
            database = list(self._database())
        except Exception:
            _log.exception("metrics: the database did not answer")
            database = []
        up.add_metric(["database"], 1.0 if database else 0.0)
        yield from database
        try:
            prefect = list(self._prefect())
        except Exception:
            _log.exception("metrics: the Prefect API did not answer")
            prefect = []
        up.add_metric(["prefect"], 1.0 if prefect else 0.0)
        yield from prefect
        yield up

    def _database(self) -> Iterator[Metric]:
        with session_scope() as session:
            outcomes = outcome_counts(session)
            charges, refunds = alerts.ledger_counts(session)
            pending = alerts.pending_requests(session)
            cumulative, total, count = duration_histogram(session)
        changes = CounterMetricFamily(
            "posegen_background_changes",
            "Background changes that ended, by outcome (recorded by the flow, its hooks, "
            "the reconciler or the API's abort).",
            labels=["outcome"],
        )
        for outcome, value in outcomes.items():
            changes.add_metric([outcome.value], value)
        yield changes
        yield CounterMetricFamily(
            "posegen_credit_charges",
            "Charges of credits in the ledger (free, 0-credit changes excluded).",
            value=charges,
        )
        yield CounterMetricFamily(
            "posegen_credit_refunds",
            "Refunds of credits in the ledger, wherever they were made.",
            value=refunds,
        )
        yield GaugeMetricFamily(
            "posegen_pose_requests_pending",
            "Pose requests waiting for an admin's decision.",
            value=pending,
        )
        buckets = [
            (f"{bound:g}", value) for bound, value in zip(DURATION_BUCKETS, cumulative, strict=True)
        ]
        yield HistogramMetricFamily(
            "posegen_background_change_duration_seconds",
            "Completed background changes: seconds from the charge (the request) to the end.",
            buckets=[*buckets, ("+Inf", count)],
            sum_value=total,
        )

    def _prefect(self) -> Iterator[Metric]:
        settings = get_settings()
        queued, running = run_coro_as_sync(
            alerts.prefect_figures(settings, now=datetime.now(UTC))
        ) or (0, 0.0)
        yield GaugeMetricFamily(
            "posegen_background_change_queue_depth",
            "Background-change runs Scheduled or Pending on the Prefect server.",
            value=queued,
        )
        yield GaugeMetricFamily(
            "posegen_background_change_longest_running_seconds",
            "Seconds the oldest Running background-change run has been running (0: none).",
            value=running,
        )


ALERT_SERIES = AlertSeriesCollector()
REGISTRY.register(ALERT_SERIES)

# Paths nothing matched are not a label value: a scanner would create one series per URL.
_UNMATCHED = "unmatched"
_access_log = logging.getLogger("posegen.api.access")
_log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus text format; no authentication, like /health (restrict it at the network)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def count_flow_run_submitted(flow_name: str) -> None:
    FLOW_RUNS_SUBMITTED.labels(flow=flow_name).inc()


def count_credits_charged(amount: int, reason: str) -> None:
    if amount > 0:
        CREDITS_CHARGED.labels(reason=reason).inc(amount)


def count_credits_refunded(amount: int, reason: str) -> None:
    if amount > 0:
        CREDITS_REFUNDED.labels(reason=reason).inc(amount)


def count_rate_limited(bucket: str) -> None:
    RATE_LIMITED.labels(bucket=bucket).inc()


def _route_template(scope: Scope) -> str:
    """The matched route as its full path template, e.g. `/api/.../poses/{pose_id}/background`.

    FastAPI >= 0.150 puts the route as declared in its router into `scope["route"]`, without
    the prefixes it was included under; older versions put the prefixed copy. The prefix is
    whatever part of the request path comes before the route's own pattern matches, which
    gives the same answer on both.
    """
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    pattern: re.Pattern[str] | None = getattr(route, "path_regex", None)
    if not path_format or pattern is None:
        return _UNMATCHED
    path = scope["path"]
    for start, char in enumerate(path):
        if char == "/" and pattern.match(path[start:]):
            return path[:start] + path_format
    return path_format


class RequestMetricsMiddleware:
    """Count and time every HTTP request by its route template, and log one access line.

    A plain ASGI middleware: it sees the route FastAPI matched (`scope["route"]`, set by the
    router on the same scope) after the app ran, and it does not buffer streamed responses.
    A request that raised counts as 500, which is what the error handler answers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(elapsed)
            # The path without its query string: a query may carry something secret.
            _access_log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
