"""A campaign's burndown as the geometry of a small inline SVG chart (drawn by a template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 40, 16, 34
MAX_X_LABELS = 6

# (key in a burndown point, legend, CSS class)
SERIES = (
    ("needing_change", "needing change", "needing"),
    ("prs_open", "PRs open", "open"),
    ("prs_merged", "PRs merged", "merged"),
)

KEYS = tuple(key for key, _, _ in SERIES)


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass
class Series:
    key: str
    label: str
    css: str
    dots: list[Dot] = field(default_factory=list)

    @property
    def points(self) -> str:
        """The polyline's points attribute."""
        return " ".join(f"{d.x:.1f},{d.y:.1f}" for d in self.dots)


@dataclass
class Chart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    series: list[Series]
    x_labels: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]
    summary: str


def _time(point: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(point.get("at")))
    except ValueError:
        return None


def _label(at: datetime | None, span_seconds: float) -> str:
    if at is None:
        return "?"
    return at.strftime("%m-%d %H:%M" if span_seconds < 2 * 86400 else "%Y-%m-%d")


def burndown_chart(points: list[dict[str, Any]]) -> Chart:
    """Lines of repositories needing change, PRs open and PRs merged, one dot per run."""
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    times = [_time(p) for p in points]
    known = [t for t in times if t is not None]
    span = (max(known) - min(known)).total_seconds() if len(known) == len(points) > 1 else 0.0
    n = len(points)

    def x_of(i: int) -> float:
        if span > 0:
            return LEFT + (right - LEFT) * (times[i] - min(known)).total_seconds() / span
        return LEFT + (right - LEFT) * (i / (n - 1) if n > 1 else 0.5)

    values = [int(p.get(k) or 0) for p in points for k in ("repositories", *KEYS)]
    top_value = max([1, *values])

    def y_of(value: int) -> float:
        return bottom - (bottom - TOP) * value / top_value

    step = max(1, -(-top_value // 5))  # at most about six grid lines
    y_ticks = [(y_of(v), v) for v in range(0, top_value + 1, step)]
    if y_ticks[-1][1] != top_value:
        y_ticks.append((y_of(top_value), top_value))

    series = []
    for key, label, css in SERIES:
        line = Series(key, label, css)
        for i, point in enumerate(points):
            value = int(point.get(key) or 0)
            when = times[i].strftime("%Y-%m-%d %H:%M") if times[i] else "?"
            title = (
                f"{when} · {point.get('job_id') or point.get('campaign_run', '')}: {value} {label}"
            )
            line.dots.append(Dot(x_of(i), y_of(value), title))
        series.append(line)

    every = max(1, -(-n // MAX_X_LABELS))
    x_labels = [(x_of(i), _label(times[i], span)) for i in range(0, n, every)]
    if n:
        last = points[-1]
        summary = (
            f"{n} run{'s' if n != 1 else ''}; latest: {last.get('needing_change', 0)} needing "
            f"change, {last.get('prs_open', 0)} PRs open, {last.get('prs_merged', 0)} merged"
        )
    else:
        summary = "no runs yet"
    return Chart(WIDTH, HEIGHT, LEFT, right, TOP, bottom, series, x_labels, y_ticks, summary)
