"""Rollout: rate, windows, concurrency and budget decide when a campaign's next job starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codybatch.rollout import Launched, Rollout, next_launch, parse_rollout
from codybatch.spec import FieldError

MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def parse(rollout: object = None, budget: object = None, max_usd: float = 2.0) -> Rollout:
    errors: list[FieldError] = []
    parsed = parse_rollout(rollout, budget, max_usd, errors)
    if errors:
        raise ValueError("\n".join(map(str, errors)))
    return parsed


@pytest.mark.parametrize(
    ("rollout", "budget", "field", "says"),
    [
        ({"rate": "10/hr"}, None, "rollout.rate", "N/hour"),
        ({"rate": "0/hour"}, None, "rollout.rate", "not a rate"),
        ({"rate": 10}, None, "rollout.rate", "not a rate"),
        ({"max_concurrent_jobs": 0}, None, "rollout.max_concurrent_jobs", "1 to 100"),
        ({"windows": [{"days": ["funday"]}]}, None, "rollout.windows[0].days", "mon, tue"),
        ({"windows": [{"hours": "17-09"}]}, None, "rollout.windows[0].hours", "start < end"),
        ({"speed": "fast"}, None, "rollout.speed", "not known"),
        (None, {"per_run_usd": 1.0}, "budget.per_run_usd", "below one repository's limit"),
        (None, {"total_usd": "lots"}, "budget.total_usd", "amount in USD"),
        ("fast", None, "rollout", "must be a mapping"),
    ],
)
def test_bad_rollout_names_the_field_and_the_fix(
    rollout: object, budget: object, field: str, says: str
) -> None:
    errors: list[FieldError] = []
    parse_rollout(rollout, budget, 2.0, errors)
    assert [e.field for e in errors] == [field]
    assert says in errors[0].message


def test_rates_windows_and_budgets_parse() -> None:
    rollout = parse(
        {
            "rate": "10/hour",
            "max_concurrent_jobs": 3,
            "windows": [{"days": "mon,tue", "hours": "09-17"}],
        },
        {"per_run_usd": 20, "total_usd": 100},
    )
    assert (rollout.rate.count, rollout.rate.period) == (10, 3600)
    assert str(rollout.rate) == "10/hour"
    assert rollout.max_concurrent_jobs == 3 and rollout.batch_size == 5
    assert rollout.windows[0].days == (0, 1) and (
        rollout.windows[0].start,
        rollout.windows[0].end,
    ) == (9, 17)
    assert parse({"rate": "2/minutes"}).batch_size == 2  # never a job bigger than the rate


def launched(
    minutes_ago: float, size: int = 5, in_flight: bool = False, usd: float = 0.0
) -> Launched:
    return Launched(MONDAY_NOON - timedelta(minutes=minutes_ago), size, in_flight, usd)


def test_rate_spaces_jobs_evenly_and_caps_every_period() -> None:
    rollout = parse({"rate": "10/hour"})
    assert next_launch(rollout, MONDAY_NOON, 5, 10, [], [], 0).go
    # A job of five used half the hour's ten: the next waits 30 minutes after it.
    decision = next_launch(rollout, MONDAY_NOON, 5, 10, [], [launched(10)], 0)
    assert not decision.go and decision.wait_until == MONDAY_NOON + timedelta(minutes=20)
    assert next_launch(rollout, MONDAY_NOON, 5, 10, [], [launched(30)], 0).go
    # Two jobs of five in the last hour: the third waits until the older leaves the hour.
    decision = next_launch(rollout, MONDAY_NOON, 5, 10, [], [launched(50), launched(31)], 0)
    assert decision.wait_until == MONDAY_NOON + timedelta(minutes=10)


def test_concurrency_windows_and_budget() -> None:
    rollout = parse(
        {"max_concurrent_jobs": 2, "windows": [{"days": ["sat", "sun"], "hours": "00-06"}]},
        {"per_run_usd": 20, "total_usd": 30},
    )
    decision = next_launch(rollout, MONDAY_NOON, 5, 10, [], [], 0)
    assert decision.wait_until == datetime(2026, 1, 10, 0, 0, tzinfo=UTC)  # Saturday 00:00
    saturday = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)
    busy = [launched(1, in_flight=True), launched(2, in_flight=True)]
    decision = next_launch(rollout, saturday, 5, 10, [], busy, 0)
    assert not decision.go and "max_concurrent_jobs" in decision.reason
    # This run committed 12 USD; a job that may cost 10 more would pass the 20 per run.
    decision = next_launch(rollout, saturday, 5, 10, [launched(5, usd=12.0)], [], 12.0)
    assert decision.stop and "budget per run spent: 12.00 of 20.00" in decision.reason
    decision = next_launch(rollout, saturday, 5, 10, [], [], 25.0)
    assert decision.stop and "total budget spent" in decision.reason
