"""Reading Prefect events back from the test server (the filter endpoint lags a few seconds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def wait_for_events(
    api_url: str, name: str, resource_id: str, *, count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll POST /events/filter until `count` matching events arrived (or time is up)."""
    body = {
        "filter": {
            "occurred": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
            "event": {"name": [name]},
            "resource": {"id": [resource_id]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = httpx.post(f"{api_url}/events/filter", json=body, timeout=5)
        response.raise_for_status()
        events = response.json()["events"]
        if len(events) >= count:
            return events
        time.sleep(0.5)
    return events
