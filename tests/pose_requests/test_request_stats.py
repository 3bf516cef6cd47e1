"""Statistics of a hand-computed board (see dataset.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from posegen.db.session import session_scope
from posegen.domain import request_stats
from tests.pose_requests.dataset import EXPECTED, NOW, load_dataset


@pytest.fixture
def stats(fresh_db_url: str) -> dict[str, Any]:
    load_dataset(fresh_db_url)
    with session_scope(fresh_db_url) as session:
        frame = request_stats.load_request_frame(session, NOW)
    return request_stats.compute_stats(frame, NOW)


def test_totals_by_status_and_category(stats: dict[str, Any]) -> None:
    for key in ("totalRequests", "totalVotes", "byStatus", "byCategory"):
        assert stats[key] == EXPECTED[key], key


def test_top_voted_orders_by_votes_then_newest(stats: dict[str, Any]) -> None:
    assert [r["poseName"] for r in stats["topVoted"]] == EXPECTED["topVoted"]
    assert [r["votesCount"] for r in stats["topVoted"]] == EXPECTED["topVotes"]


def test_trending_counts_only_last_7_days_of_open_requests(stats: dict[str, Any]) -> None:
    assert [(r["poseName"], r["votes7d"]) for r in stats["trending7d"]] == EXPECTED["trending7d"]


def test_decay_ranking_uses_votes_of_last_30_days_and_age(stats: dict[str, Any]) -> None:
    ranked = [(r["poseName"], r["votes30d"], r["score"]) for r in stats["trendingDecay"]]
    assert [(name, votes) for name, votes, _ in ranked] == [
        (name, votes) for name, votes, _ in EXPECTED["trendingDecay"]
    ]
    for (_, _, score), (_, _, expected) in zip(ranked, EXPECTED["trendingDecay"], strict=True):
        assert score == pytest.approx(expected, abs=1e-6)


def test_ratios_and_medians(stats: dict[str, Any]) -> None:
    for key in (
        "approvalRatio",
        "rejectionRatio",
        "medianHoursToCompletion",
        "medianHoursToFirstAction",
    ):
        assert stats[key] == EXPECTED[key], key


def test_empty_board_has_zeros_and_no_ratios() -> None:
    frame = request_stats.typed_frame(pd.DataFrame(columns=request_stats.FRAME_COLUMNS))
    stats = request_stats.compute_stats(frame, NOW)
    assert stats["totalRequests"] == 0 and stats["totalVotes"] == 0
    assert set(stats["byStatus"].values()) == {0}
    assert stats["topVoted"] == stats["trending7d"] == stats["trendingDecay"] == []
    assert stats["approvalRatio"] is None and stats["medianHoursToCompletion"] is None
    assert "0** requests" in request_stats.render_markdown(stats)


def test_markdown_and_table_show_the_numbers(stats: dict[str, Any]) -> None:
    markdown = request_stats.render_markdown(stats)
    assert "**7** requests, **13** votes" in markdown
    assert "Approval 80.0%" in markdown and "to completion 36.0 h" in markdown
    rows = request_stats.top_voted_rows(stats)
    assert [(r["rank"], r["poseName"], r["votes"]) for r in rows[:2]] == [
        (1, "R4", 5),
        (2, "R1", 4),
    ]
