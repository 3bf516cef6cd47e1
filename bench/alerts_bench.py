"""What the alert series cost a /metrics scrape: the database part of `AlertSeriesCollector`
(outcome counts, ledger counts, pending requests, the duration histogram) over N recorded
changes, beside a scrape of the in-process metrics alone (the baseline), in one process.

    .venv/bin/python -m bench.alerts_bench [--rows 10000,100000] [--db sqlite|postgres]

The Prefect half (two API calls per scrape) is not here: it does not grow with history.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.harness import isolated_home


def _fill(url: str, rows: int) -> None:
    """`rows` finished changes (1 in 10 failed and refunded), written in bulk."""
    from sqlalchemy import insert

    from posegen.db.models import CreditTransaction, User
    from posegen.db.operations import BackgroundChangeOutcome
    from posegen.db.session import session_scope

    now = datetime.now(UTC)
    with session_scope(url) as session:
        user_id = uuid.uuid4()
        session.execute(insert(User).values(id=user_id, email=f"{user_id}@bench", credits=0))
        outcomes, ledger = [], []
        for number in range(rows):
            request_id = uuid.uuid4()
            failed = number % 10 == 0
            at = now - timedelta(seconds=number)
            charge_id = uuid.uuid4()
            ledger.append(
                {
                    "id": charge_id,
                    "user_id": user_id,
                    "amount": -10,
                    "reason": "background_change",
                    "idempotency_key": f"background-change:{request_id}",
                    "created_at": at,
                    "refund_of": None,
                }
            )
            if failed:
                ledger.append(
                    {
                        "id": uuid.uuid4(),
                        "user_id": user_id,
                        "amount": 10,
                        "reason": "refund",
                        "idempotency_key": f"refund:background-change:{request_id}",
                        "created_at": at,
                        "refund_of": charge_id,
                    }
                )
            outcomes.append(
                {
                    "request_id": request_id,
                    "pose_id": uuid.uuid4(),
                    "outcome": "failed" if failed else "completed",
                    "duration_seconds": 0.5 + number % 40,
                    "finished_at": at,
                }
            )
        session.execute(insert(CreditTransaction), ledger)
        session.execute(insert(BackgroundChangeOutcome), outcomes)


def _time(call: object, repeat: int = 15) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="10000,100000")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    isolated_home("posegen-alerts-bench-")
    from prometheus_client import generate_latest

    from posegen.config import reset_settings
    from posegen.db.migrate import upgrade

    if args.db == "postgres":
        from tests.conftest import fresh_pg_database

        database = fresh_pg_database("posegen_alerts_bench")
    else:
        database = contextlib.nullcontext(None)
    with database as pg:
        if pg is not None:
            os.environ["POSEGEN_DATABASE_URL"] = pg
        reset_settings()
        url = os.environ["POSEGEN_DATABASE_URL"]
        upgrade(url)
        from posegen.api import metrics

        # The baseline: a scrape of the in-process metrics alone (the alert series taken out).
        metrics.REGISTRY.unregister(metrics.ALERT_SERIES)
        print(f"alerts bench ({args.db}; median of 15 scrapes; machine shared, loaded)")
        filled = 0
        for rows in [int(r) for r in args.rows.split(",")]:
            _fill(url, rows - filled)
            filled = rows
            baseline = _time(lambda: generate_latest(metrics.REGISTRY))
            series = _time(lambda: list(metrics.ALERT_SERIES._database()))
            print(
                f"  {rows:>7} changes: alert database series {series:7.1f} ms per scrape, "
                f"in-process metrics {baseline:5.1f} ms (x{series / baseline:.0f})"
            )


if __name__ == "__main__":
    main()
