"""The fleet: joins and leaves, who needs work, paced and idempotent launch claims, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codybatch import fleet
from codybatch.fleet_records import ErrorClass, FleetEntry, FleetStatus
from codybatch.records import Job, JobStatus, RepositoryResult, RepositoryStatus, Usage
from codybatch.rollout import Budget, Rate, Rollout
from codybatch.store.local import LocalStore

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
KEYS = [f"github.com/acme/r{i:02d}" for i in range(12)]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "home")


def test_members_join_and_leave_and_each_change_is_recorded(store: LocalStore) -> None:
    entries, changes = fleet.sync_members(store, "c", {k: None for k in KEYS[:3]}, T0)
    assert changes.joined == KEYS[:3] and changes.left == []
    later = T0 + timedelta(days=1)
    targets = {KEYS[0]: None, KEYS[1]: "archived", KEYS[3]: None}
    entries, changes = fleet.sync_members(store, "c", targets, later)
    assert changes.joined == [KEYS[3]] and sorted(changes.left) == [KEYS[1], KEYS[2]]
    by_key = {e.repository: e for e in entries}
    assert by_key[KEYS[1]].left_reason == "archived" and by_key[KEYS[1]].left_at == later
    assert by_key[KEYS[2]].left_reason == "no longer selected"
    assert store.get_fleet("c", KEYS[0]).joined_at == T0  # staying is no change
    # Back again: it rejoins.
    _, changes = fleet.sync_members(store, "c", {KEYS[2]: None}, later)
    assert changes.joined == [KEYS[2]] and store.get_fleet("c", KEYS[2]).member


def test_plan_skips_what_is_done_and_groups_the_rest_in_fives() -> None:
    rev = "rev1"
    entries = [
        FleetEntry(
            "c", KEYS[0], status=FleetStatus.COMPLETED, spec_revision=rev, base_revision="a"
        ),
        FleetEntry(
            "c", KEYS[1], status=FleetStatus.COMPLETED, spec_revision=rev, base_revision="a"
        ),
        FleetEntry(
            "c", KEYS[2], status=FleetStatus.COMPLETED, spec_revision="old", base_revision="a"
        ),
        FleetEntry("c", KEYS[3], status=FleetStatus.LAUNCHED, run_id="r1"),
        FleetEntry("c", KEYS[4], status=FleetStatus.COMPLETED, done_reason="merged"),
        FleetEntry("c", KEYS[5], status=FleetStatus.FAILED, spec_revision=rev, base_revision="a"),
        FleetEntry(
            "c",
            KEYS[6],
            status=FleetStatus.FAILED,
            spec_revision=rev,
            base_revision="a",
            retry=True,
        ),
        FleetEntry("c", KEYS[7], member=False, left_reason="archived"),
        *(FleetEntry("c", k) for k in KEYS[8:]),
    ]
    bases = {k: "a" for k in KEYS} | {KEYS[1]: "b"}
    planned = fleet.plan(entries, rev, bases, 5)
    assert planned.batches == [[KEYS[1], KEYS[2], KEYS[6], KEYS[8], KEYS[9]], [KEYS[10], KEYS[11]]]
    assert planned.skipped == {
        "up to date at the same base and spec": 1,
        "in flight": 1,
        "merged": 1,
        "failed at the same base and spec": 1,
        "left the campaign": 1,
    }
    # An unknown base never counts as "the same": the repository is run, not skipped.
    assert fleet.plan(entries[:1], rev, {}, 5).batches == [[KEYS[0]]]


def _job(store: LocalStore, run_id: str, keys: list[str], status: JobStatus, usd: float) -> None:
    job_id = fleet.job_id_for_run(fleet.JOB_DAG_ID, run_id)
    spec = {"name": "x", "repositories": keys, "campaign": "c"}
    store.create_job(Job(job_id, spec, dag_id=fleet.JOB_DAG_ID, run_id=run_id))
    store.update_job(job_id, status=status, usage=Usage(usd=usd))


def test_claims_are_paced_recorded_and_idempotent(store: LocalStore) -> None:
    rollout = Rollout(rate=Rate(10, 3600), max_concurrent_jobs=2)
    fleet.sync_members(store, "c", {k: None for k in KEYS}, T0)

    def claim(run_id: str, batch: list[str], now: datetime, campaign_run: str = "cr1"):
        return fleet.claim_launch(
            store, "c", campaign_run, run_id, batch, "rev", {}, rollout, 2.0, now
        )

    first = claim("j1", KEYS[:5], T0)
    assert first.decision.go and not first.already
    entry = store.get_fleet("c", KEYS[0])
    assert entry.status == FleetStatus.LAUNCHED and entry.run_id == "j1" and entry.jobs == 1
    assert fleet.launched_by_campaign(store, "c", "j1", [f"acme/r0{i}" for i in range(5)])
    assert not fleet.launched_by_campaign(store, "c", "j1", [KEYS[5]])
    assert claim("j1", KEYS[:5], T0).already  # a retried launch task: no second record
    waiting = claim("j2", KEYS[5:10], T0 + timedelta(minutes=1))
    assert waiting.decision.wait_until == T0 + timedelta(minutes=30)
    assert store.get_fleet("c", KEYS[5]).status == FleetStatus.NEW  # nothing recorded
    assert claim("j2", KEYS[5:10], T0 + timedelta(minutes=30)).decision.go
    # Two jobs in flight: the third waits for a slot even though the rate would allow it.
    blocked = claim("j3", KEYS[10:], T0 + timedelta(hours=2))
    assert "max_concurrent_jobs" in blocked.decision.reason
    _job(store, "j1", KEYS[:5], JobStatus.COMPLETED, 1.5)
    assert claim("j3", KEYS[10:], T0 + timedelta(hours=2)).decision.go
    state, _ = store.get_campaign_state("c")
    assert [(r["run_id"], r["settled_usd"]) for r in state["launches"]] == [
        ("j1", 1.5),
        ("j2", None),
        ("j3", None),
    ]


def test_a_budget_stops_launching_and_says_so(store: LocalStore) -> None:
    rollout = Rollout(budget=Budget(per_run_usd=12.0))
    ok = fleet.claim_launch(store, "c", "cr1", "j1", KEYS[:5], "rev", {}, rollout, 2.0, T0)
    assert ok.decision.go  # five repositories at 2 USD each may cost 10
    stop = fleet.claim_launch(store, "c", "cr1", "j2", KEYS[5:10], "rev", {}, rollout, 2.0, T0)
    assert stop.decision.stop
    assert fleet.stopped_reason(store, "c", "cr1") == stop.decision.reason
    assert "budget per run spent: 10.00 of 12.00 USD" in stop.decision.reason
    # The next campaign run has a budget of its own.
    assert fleet.claim_launch(
        store, "c", "cr2", "j3", KEYS[5:10], "rev", {}, rollout, 2.0, T0
    ).decision.go


def test_finished_jobs_update_their_entries_and_retry_marks_the_failed(store: LocalStore) -> None:
    fleet.sync_members(store, "c", {k: None for k in KEYS[:3]}, T0)
    fleet.claim_launch(store, "c", "cr1", "j1", KEYS[:3], "rev", {}, Rollout(), 2.0, T0)
    job_id = fleet.job_id_for_run(fleet.JOB_DAG_ID, "j1")
    job = Job(job_id, {"name": "x", "repositories": KEYS[:3], "campaign": "c"}, run_id="j1")
    results = [
        RepositoryResult(
            job_id,
            KEYS[0],
            RepositoryStatus.COMPLETED,
            pr_state="open",
            pr_url="https://x/pull/1",
            pr_number=1,
            usage=Usage(usd=0.4),
        ),
        RepositoryResult(job_id, KEYS[1], RepositoryStatus.FAILED, error="git clone failed: 128"),
        RepositoryResult(
            job_id,
            KEYS[2],
            RepositoryStatus.FAILED,
            error="verify ('npm test') still failed after 3 rounds",
        ),
    ]
    assert fleet.record_job(store, job, results) == 3
    done = store.get_fleet("c", KEYS[0])
    assert (done.status, done.pr_state, done.usd) == (FleetStatus.COMPLETED, "open", 0.4)
    assert store.get_fleet("c", KEYS[1]).error_class == ErrorClass.CLONE_FAILED
    assert store.get_fleet("c", KEYS[2]).error_class == ErrorClass.VERIFY_FAILED
    assert fleet.request_retry(store, "c", failed=True) == KEYS[1:3]
    assert fleet.request_retry(store, "c", ["acme/r00"]) == [KEYS[0]]
    assert store.get_fleet("c", KEYS[0]).retry
    with pytest.raises(KeyError, match="not a repository of campaign c"):
        fleet.request_retry(store, "c", ["acme/elsewhere"])
    # A launch for a newer job of the repository owns its entry: an old job's late finish
    # does not overwrite it.
    fleet.claim_launch(store, "c", "cr2", "j2", KEYS[:1], "rev", {}, Rollout(), 2.0, T0)
    assert fleet.record_job(store, job, results[:1]) == 0
    newer = store.get_fleet("c", KEYS[0])
    assert newer.status == FleetStatus.LAUNCHED and newer.usd_before == 0.4 and not newer.retry


@pytest.mark.parametrize(
    ("error", "stop_reason", "expected"),
    [
        ("git clone failed: fatal: repository not found", None, ErrorClass.CLONE_FAILED),
        ("step 1 ('make') exited with 2: cannot clone submodule", None, ErrorClass.STEP_FAILED),
        ("verify ('npm test') still failed after 3 rounds", None, ErrorClass.VERIFY_FAILED),
        ("github.com/acme/x not found or not visible to the token", None, ErrorClass.NO_ACCESS),
        ("acme/x is archived: nothing can be changed", None, ErrorClass.ARCHIVED),
        ("Claude could not finish: 529 overloaded", None, ErrorClass.CLAUDE_LIMIT),
        ("Claude could not finish: spent the budget", "max_usd", ErrorClass.CLAUDE_LIMIT),
        ("git push failed: ! [remote rejected] (protected branch)", None, ErrorClass.PUSH_REJECTED),
        ("the worker stopped before finishing (killed)", None, ErrorClass.WORKER_LOST),
        ("something else", None, ErrorClass.OTHER),
    ],
)
def test_failures_are_classified(error: str, stop_reason: str | None, expected: ErrorClass) -> None:
    result = RepositoryResult(
        "j", "r", RepositoryStatus.FAILED, error=error, stop_reason=stop_reason
    )
    assert fleet.classify(result) == expected
