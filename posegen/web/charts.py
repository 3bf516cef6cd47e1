"""Charts for the admin's statistics page as inline SVG geometry, computed here from numbers.

The templates draw `<rect>`, `<polyline>` and `<text>` from these values: no chart library,
no script and no style attribute (the pages' CSP allows neither inline scripts nor styles).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH = 600
ROW = 28
LABEL_WIDTH = 190
PLOT_HEIGHT = 220
PLOT_LEFT = 40
PLOT_BOTTOM = 24


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    y: int
    width: float
    key: str


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    height: int
    label_width: int
    plot_width: int


@dataclass(frozen=True)
class Line:
    name: str
    key: str
    points: str
    last: int


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    width: int
    height: int
    top: int
    ticks: list[tuple[float, int]]  # (y, value)
    start: datetime | None
    end: datetime | None
    plot_left: int
    plot_bottom: float


def bars(items: list[tuple[str, int]], keys: list[str] | None = None) -> BarChart:
    """Horizontal bars, one row each, scaled to the largest value; `keys` name colour classes."""
    plot = WIDTH - LABEL_WIDTH - 40
    top = max((value for _, value in items), default=0) or 1
    shown = [
        Bar(
            label=label if len(label) <= 28 else f"{label[:27]}…",
            value=int(value),
            y=index * ROW,
            width=round(plot * value / top, 1),
            key=keys[index] if keys else "bar",
        )
        for index, (label, value) in enumerate(items)
    ]
    return BarChart(shown, max(len(shown), 1) * ROW, LABEL_WIDTH, plot)


def lines(times: list[datetime], series: dict[str, list[int]]) -> LineChart:
    """One polyline per series over evenly spaced snapshots, with a zero-based value axis."""
    top = max((max(values, default=0) for values in series.values()), default=0) or 1
    plot_width = WIDTH - PLOT_LEFT - 10
    step = plot_width / max(len(times) - 1, 1)
    bottom = PLOT_HEIGHT - PLOT_BOTTOM

    def y(value: float) -> float:
        return round(bottom - (bottom - 10) * value / top, 1)

    shown = [
        Line(
            name=name,
            key=f"s{index}",
            points=" ".join(
                f"{round(PLOT_LEFT + i * step, 1)},{y(v)}" for i, v in enumerate(values)
            ),
            last=values[-1] if values else 0,
        )
        for index, (name, values) in enumerate(series.items())
    ]
    ticks = sorted({0, top // 2, top})
    return LineChart(
        lines=shown,
        width=WIDTH,
        height=PLOT_HEIGHT,
        top=top,
        ticks=[(y(t), t) for t in ticks],
        start=times[0] if times else None,
        end=times[-1] if times else None,
        plot_left=PLOT_LEFT,
        plot_bottom=bottom,
    )
