"""A campaign's rollout: how fast (rate), how many at once, when (windows), how much (budget).

Pure decisions over recorded launches: `next_launch` says whether a job of k repositories
may start now, or when to look again, or why it never will in this campaign run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from codybatch.spec import MAX_REPOSITORIES, FieldError

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
_HOURS = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")
MAX_CONCURRENT_JOBS = 100
POLL = timedelta(seconds=30)  # how often a launch waiting for a free slot looks again


@dataclass(frozen=True)
class Rate:
    """`count` repositories per `period` seconds."""

    count: int
    period: int

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.count}/{unit}"

    def spacing(self, repositories: int) -> timedelta:
        """The gap a launch of that many repositories leaves before the next one."""
        return timedelta(seconds=self.period * repositories / self.count)


@dataclass(frozen=True)
class Window:
    """UTC days of the week and hours [start, end) when launches may happen."""

    days: tuple[int, ...]  # 0 = Monday
    start: int
    end: int

    def contains(self, moment: datetime) -> bool:
        return moment.weekday() in self.days and self.start <= moment.hour < self.end


@dataclass(frozen=True)
class Budget:
    per_run_usd: float | None = None
    total_usd: float | None = None


@dataclass(frozen=True)
class Rollout:
    rate: Rate | None = None
    max_concurrent_jobs: int = 10
    windows: tuple[Window, ...] = ()
    budget: Budget = field(default_factory=Budget)

    @property
    def batch_size(self) -> int:
        """Repositories per job: five, fewer when the rate allows fewer per period."""
        return min(MAX_REPOSITORIES, self.rate.count) if self.rate else MAX_REPOSITORIES

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": str(self.rate) if self.rate else None,
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "windows": [
                {"days": [DAYS[d] for d in w.days], "hours": f"{w.start:02d}-{w.end:02d}"}
                for w in self.windows
            ],
            "budget": {
                "per_run_usd": self.budget.per_run_usd,
                "total_usd": self.budget.total_usd,
            },
            "batch_size": self.batch_size,
        }


def parse_rollout(rollout: Any, budget: Any, max_usd: float, errors: list[FieldError]) -> Rollout:
    """The `rollout` and `budget` fields of a campaign file; errors name the field and the fix."""
    if rollout is None:
        rollout = {}
    if not isinstance(rollout, Mapping):
        errors.append(FieldError("rollout", "must be a mapping: {rate: 10/hour, ...}"))
        rollout = {}
    for key in sorted(set(rollout) - {"rate", "max_concurrent_jobs", "windows"}):
        errors.append(
            FieldError(f"rollout.{key}", "is not known: use rate, max_concurrent_jobs, windows")
        )
    rate = _rate(rollout.get("rate"), errors)
    concurrent = rollout.get("max_concurrent_jobs", 10)
    if (
        isinstance(concurrent, bool)
        or not isinstance(concurrent, int)
        or not 1 <= concurrent <= MAX_CONCURRENT_JOBS
    ):
        errors.append(
            FieldError(
                "rollout.max_concurrent_jobs",
                f"is {concurrent!r}: give a whole number from 1 to {MAX_CONCURRENT_JOBS}",
            )
        )
        concurrent = 10
    windows = _windows(rollout.get("windows"), errors)
    return Rollout(rate, concurrent, windows, _budget(budget, max_usd, errors))


def _rate(value: Any, errors: list[FieldError]) -> Rate | None:
    if value is None:
        return None
    match = _RATE.match(str(value).lower()) if isinstance(value, str) else None
    unit = match.group(2).removesuffix("s") if match else ""
    if not match or unit not in PERIODS or int(match.group(1)) < 1:
        errors.append(
            FieldError(
                "rollout.rate",
                f"{value!r} is not a rate: write N/second, N/minute, N/hour or N/day "
                "(repositories started per period, e.g. 10/hour)",
            )
        )
        return None
    return Rate(int(match.group(1)), PERIODS[unit])


def _windows(value: Any, errors: list[FieldError]) -> tuple[Window, ...]:
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError("rollout.windows", "must be a list of {days, hours}"))
        return ()
    windows = []
    for i, item in enumerate(value):
        label = f"rollout.windows[{i}]"
        if not isinstance(item, Mapping):
            errors.append(FieldError(label, "must be {days: [mon, ...], hours: '09-17'}"))
            continue
        days = item.get("days", list(DAYS))
        if isinstance(days, str):
            days = [d.strip() for d in days.split(",")]
        if (
            not isinstance(days, list)
            or not days
            or any(not isinstance(d, str) or d.lower()[:3] not in DAYS for d in days)
        ):
            errors.append(FieldError(f"{label}.days", f"{days!r}: list days as {', '.join(DAYS)}"))
            continue
        hours = _HOURS.match(str(item.get("hours", "00-24")))
        start, end = (int(hours.group(1)), int(hours.group(2))) if hours else (0, 0)
        if not hours or not 0 <= start < end <= 24:
            errors.append(
                FieldError(
                    f"{label}.hours",
                    f"{item.get('hours')!r}: write UTC hours as 'HH-HH' with start < end, "
                    "e.g. '09-17'",
                )
            )
            continue
        day_numbers = tuple(sorted({DAYS.index(d.lower()[:3]) for d in days}))
        windows.append(Window(day_numbers, start, end))
    return tuple(windows)


def _budget(value: Any, max_usd: float, errors: list[FieldError]) -> Budget:
    if value is None:
        return Budget()
    if not isinstance(value, Mapping):
        errors.append(FieldError("budget", "must be {per_run_usd: N, total_usd: N}"))
        return Budget()
    out: dict[str, float | None] = {}
    for key in sorted(set(value) - {"per_run_usd", "total_usd"}):
        errors.append(FieldError(f"budget.{key}", "is not known: use per_run_usd, total_usd"))
    for key in ("per_run_usd", "total_usd"):
        amount = value.get(key)
        if amount is None:
            out[key] = None
        elif isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            errors.append(FieldError(f"budget.{key}", f"is {amount!r}: give an amount in USD"))
            out[key] = None
        elif amount < max_usd:
            errors.append(
                FieldError(
                    f"budget.{key}",
                    f"is {amount} USD, below one repository's limit (max_usd {max_usd}): "
                    "raise the budget or lower max_usd",
                )
            )
            out[key] = None
        else:
            out[key] = float(amount)
    return Budget(out["per_run_usd"], out["total_usd"])


@dataclass(frozen=True)
class Launched:
    """A job a campaign started: when, how many repositories, what it may still cost."""

    at: datetime
    size: int
    in_flight: bool
    usd: float  # spent (finished) or the worst case still open (in flight)


@dataclass(frozen=True)
class Decision:
    """Launch now (`go`), look again at `wait_until`, or `stop` for this run (`reason`)."""

    go: bool = False
    wait_until: datetime | None = None
    stop: bool = False
    reason: str = ""


def next_launch(
    rollout: Rollout,
    now: datetime,
    size: int,
    worst_usd: float,
    this_run: Sequence[Launched],
    recent: Sequence[Launched],
    spent_total: float,
) -> Decision:
    """May a job of `size` repositories (costing at most `worst_usd`) start now?

    `this_run`: this campaign run's launches (budget per run); `recent`: all the campaign's
    launches still in flight or within the last rate period; `spent_total`: the campaign's
    spend so far including the worst case of jobs in flight."""
    budget = rollout.budget
    run_committed = sum(launch.usd for launch in this_run)
    if budget.per_run_usd is not None and run_committed + worst_usd > budget.per_run_usd:
        return Decision(
            stop=True,
            reason=f"budget per run spent: {run_committed:.2f} of {budget.per_run_usd:.2f} USD "
            f"committed, the next job may cost {worst_usd:.2f} USD",
        )
    if budget.total_usd is not None and spent_total + worst_usd > budget.total_usd:
        return Decision(
            stop=True,
            reason=f"total budget spent: {spent_total:.2f} of {budget.total_usd:.2f} USD "
            f"committed, the next job may cost {worst_usd:.2f} USD",
        )
    if rollout.windows and not any(w.contains(now) for w in rollout.windows):
        return Decision(wait_until=next_window(rollout.windows, now), reason="outside windows")
    if sum(launch.in_flight for launch in recent) >= rollout.max_concurrent_jobs:
        return Decision(
            wait_until=now + POLL,
            reason=f"{rollout.max_concurrent_jobs} jobs already running (max_concurrent_jobs)",
        )
    if rollout.rate is not None and recent:
        rate = rollout.rate
        last = max(recent, key=lambda launch: launch.at)
        # Evenly spaced: a job of k repositories uses k/rate of the period...
        earliest = last.at + rate.spacing(last.size)
        # ...and no period ever holds more than `count` repositories.
        window = sorted((launch for launch in recent), key=lambda launch: launch.at)
        for i, launch in enumerate(window):
            later = sum(x.size for x in window[i:]) + size
            if later > rate.count:
                earliest = max(earliest, launch.at + timedelta(seconds=rate.period))
        if earliest > now:
            return Decision(wait_until=earliest, reason=f"rate {rate}")
    return Decision(go=True)


def next_window(windows: Sequence[Window], now: datetime) -> datetime:
    """The start of the next hour inside one of the windows (within a week)."""
    moment = now.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 8):
        moment += timedelta(hours=1)
        if any(w.contains(moment) for w in windows):
            return moment
    raise ValueError("no window opens within a week")
