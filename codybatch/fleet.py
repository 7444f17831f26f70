"""A campaign's fleet: who is in it, who still needs work, launches paced and budgeted.

The campaign DAG calls these in order: `sync_members` (joins and leaves), `refresh` (the
latest result of each repository), `plan` (jobs of at most five that need work), then, per
job, `claim_launch` (pace and budget, compare-and-swap on the campaign's state). The job
DAG calls `record_job` when a campaign job finishes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codybatch.fleet_records import IN_FLIGHT, ErrorClass, FleetEntry, FleetStatus
from codybatch.records import (
    FINISHED_JOB_STATUSES,
    Job,
    Phase,
    RepositoryResult,
    job_id_for_run,
    utcnow,
)
from codybatch.rollout import Decision, Launched, Rollout, next_launch
from codybatch.spec import JobSpec, parse_repository
from codybatch.store import StaleWriteError, Store

log = logging.getLogger("codybatch.fleet")

JOB_DAG_ID = "codybatch_job"
# Fields of a spec that do not change what a job does to one repository.
_NOT_THE_CHANGE = ("repositories", "campaign", "description")


def campaign_slug(text: str) -> str:
    """A campaign's name from its file name (or name): a DAG-id-safe slug."""
    return re.sub(r"[^a-z0-9_]+", "_", Path(text).stem.lower()).strip("_")


def spec_revision(spec: JobSpec | dict[str, Any]) -> str:
    """A short hash of what the campaign does to each repository (its spec, not its targets)."""
    data = spec.to_dict() if isinstance(spec, JobSpec) else dict(spec)
    for name in _NOT_THE_CHANGE:
        data.pop(name, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def launch_run_id(campaign: str, campaign_run_id: str, revision: str, batch: Sequence[str]) -> str:
    """The codybatch_job run id of one job of a campaign run: the same batch in the same
    campaign run gets the same id, so a re-run of that campaign run cannot start it twice."""
    digest = hashlib.sha256("\0".join([campaign, campaign_run_id, revision, *batch]).encode())
    return f"campaign__{campaign}__{digest.hexdigest()[:16]}"


def local_revision(path: str, branch: str | None) -> str | None:
    """The commit a local repository's base branch points at (no clone needed)."""
    proc = subprocess.run(
        ["git", "-C", path, "rev-parse", "--verify", "-q", f"{branch or 'HEAD'}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"},
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


# membership


@dataclass
class Changes:
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.joined)} joined, {len(self.left)} left"


def sync_members(
    store: Store,
    campaign: str,
    targets: dict[str, str | None],
    now: datetime | None = None,
) -> tuple[list[FleetEntry], Changes]:
    """Make the fleet match this run's targets (key -> why it must leave, or None to stay);
    record each join and leave. Returns the campaign's entries, members and former ones."""
    now = now or utcnow()
    entries = {e.repository: e for e in store.fleet(campaign)}
    changes = Changes()
    changed = []
    for key, leave_reason in targets.items():
        entry = entries.get(key)
        if leave_reason is None and (entry is None or not entry.member):
            entry = entry or FleetEntry(campaign, key, joined_at=now)
            entry.member, entry.joined_at, entry.left_at, entry.left_reason = True, now, None, None
            changes.joined.append(key)
        elif leave_reason is not None and entry is not None and entry.member:
            entry.member, entry.left_at, entry.left_reason = False, now, leave_reason
            changes.left.append(key)
        else:
            continue
        entry.updated_at = now
        entries[key] = entry
        changed.append(entry)
    for key, entry in entries.items():
        if key not in targets and entry.member:
            entry.member, entry.left_at, entry.left_reason = False, now, "no longer selected"
            entry.updated_at = now
            changes.left.append(key)
            changed.append(entry)
    store.put_fleet(changed)
    return sorted(entries.values(), key=lambda e: e.repository), changes


# outcomes


def classify(result: RepositoryResult) -> ErrorClass | None:
    """The error class of a failed result, from the worker's recorded facts and message."""
    if result.status.value == "CANCELLED":
        return ErrorClass.CANCELLED
    if result.status.value != "FAILED":
        return None
    text = (result.error or "").lower()
    if result.failed_phase == Phase.PUBLISHING or ("push" in text and "reject" in text):
        return ErrorClass.PUSH_REJECTED
    if result.stop_reason in ("max_usd", "max_tokens", "max_turns", "max_minutes"):
        return ErrorClass.CLAUDE_LIMIT
    if text.startswith("step "):
        return ErrorClass.STEP_FAILED  # before the rest: a step's output may say anything
    if text.startswith("verify"):
        return ErrorClass.VERIFY_FAILED
    checks = [
        (ErrorClass.NO_ACCESS, ("not in the allowlist", "not visible", "no push access", "401")),
        (ErrorClass.ARCHIVED, ("archived",)),
        (ErrorClass.CLONE_FAILED, ("clone", "not a git repository")),
        (ErrorClass.CLAUDE_LIMIT, ("rate limit", "overloaded", "usage limit", "budget")),
        (ErrorClass.CLAUDE_ERROR, ("claude",)),
        (ErrorClass.VERIFY_FAILED, ("verify",)),
        (ErrorClass.STEP_FAILED, ("step ",)),
        (ErrorClass.WORKER_LOST, ("worker stopped", "killed", "timed out")),
        (ErrorClass.GITHUB_ERROR, ("github",)),
    ]
    for error_class, needles in checks:
        if any(needle in text for needle in needles):
            return error_class
    return ErrorClass.OTHER


def apply_result(entry: FleetEntry, result: RepositoryResult) -> None:
    """Copy the latest job's outcome for this repository into its entry."""
    if result.finished:
        entry.status = FleetStatus(result.status.value)
    entry.changed = result.were_changes_necessary
    entry.pr_url, entry.pr_number = result.pr_url, result.pr_number
    entry.pr_state = result.pr_state
    entry.checks = result.tracking.checks if result.tracking else None
    entry.rounds = len(result.fix_rounds)
    entry.merge_state = result.merge.state if result.merge else None
    entry.merge_reason = result.merge.reason if result.merge else None
    entry.usd = result.usage.usd
    entry.error = result.error
    entry.error_class = classify(result)
    action = result.publishing.action if result.publishing else ""
    if result.pr_state == "merged":
        entry.done_reason = "merged"
    elif action.startswith("left_alone"):
        entry.done_reason = "left alone: a person merged or closed its pull request"
    else:
        entry.done_reason = None
    entry.updated_at = utcnow()


def record_job(store: Store, job: Job, results: Iterable[RepositoryResult]) -> int:
    """A campaign job finished: update the entries it was launched for; return how many."""
    campaign = job.spec.get("campaign")
    if not campaign or not job.run_id:
        return 0
    updated = []
    for result in results:
        entry = store.get_fleet(campaign, result.repository)
        if entry is None or entry.run_id != job.run_id:
            continue  # a newer launch took over this repository: its entry is that one's
        apply_result(entry, result)
        updated.append(entry)
    store.put_fleet(updated)
    return len(updated)


def refresh(store: Store, entries: Sequence[FleetEntry]) -> None:
    """Re-read the latest result of every launched member (PR state, checks move on)."""
    changed = []
    for entry in entries:
        if not entry.member or not entry.job_id:
            continue
        result = store.get_result(entry.job_id, entry.repository)
        if result is None or (not result.finished and entry.status in IN_FLIGHT):
            continue
        before = entry.to_dict()
        apply_result(entry, result)
        if {**entry.to_dict(), "updated_at": None} != {**before, "updated_at": None}:
            changed.append(entry)
    store.put_fleet(changed)


def settle_lost_run(
    store: Store, campaign: str, entries: Sequence[FleetEntry], run_id: str, why: str
) -> None:
    """A launched job run ended without results (refused, deleted): its repositories failed
    and its launch no longer counts as running or spending."""
    lost = [e for e in entries if e.run_id == run_id and e.status in IN_FLIGHT]
    for entry in lost:
        entry.status, entry.error = FleetStatus.FAILED, why
        entry.error_class = ErrorClass.NOT_STARTED
        entry.updated_at = utcnow()
    store.put_fleet(lost)
    while True:
        state, revision = store.get_campaign_state(campaign)
        launches = state.get("launches", [])
        if not any(r["run_id"] == run_id and r.get("settled_usd") is None for r in launches):
            return
        settled = [{**r, "settled_usd": 0.0} if r["run_id"] == run_id else r for r in launches]
        try:
            store.put_campaign_state(campaign, {**state, "launches": settled}, revision)
            return
        except StaleWriteError:
            continue


# planning


def needs_work(entry: FleetEntry, revision: str, base: str | None) -> tuple[bool, str]:
    """Whether this run should launch a job for the repository, and why (not)."""
    if not entry.member:
        return False, f"left the campaign: {entry.left_reason}"
    if entry.status in IN_FLIGHT:
        return False, f"in flight in run {entry.run_id}"
    if entry.retry:
        return True, "retry requested"
    if entry.done_reason:
        return False, entry.done_reason
    if entry.status == FleetStatus.NEW:
        return True, "new"
    same = entry.spec_revision == revision and base is not None and entry.base_revision == base
    if entry.status in (FleetStatus.COMPLETED, FleetStatus.SKIPPED) and same:
        return False, "up to date at the same base and spec"
    if entry.status in (FleetStatus.FAILED, FleetStatus.CANCELLED) and same:
        return False, "failed at the same base and spec: retry it to run again"
    return True, "spec changed" if entry.spec_revision != revision else "base changed"


@dataclass
class Plan:
    batches: list[list[str]]
    skipped: dict[str, int]  # reason -> repositories


def plan(
    entries: Sequence[FleetEntry],
    revision: str,
    bases: dict[str, str | None],
    batch_size: int,
) -> Plan:
    """Jobs of at most `batch_size` repositories that need work, in repository order."""
    todo: list[str] = []
    skipped: dict[str, int] = {}
    for entry in entries:
        wanted, why = needs_work(entry, revision, bases.get(entry.repository))
        if wanted:
            todo.append(entry.repository)
        else:
            key = why.split(":")[0] if not why.startswith("in flight") else "in flight"
            skipped[key] = skipped.get(key, 0) + 1
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    return Plan(batches, skipped)


# launching


@dataclass
class Claim:
    decision: Decision
    already: bool = False  # this job was claimed before (a retried task): trigger it again


def _launched(
    store: Store, record: dict[str, Any], now: datetime
) -> tuple[Launched, dict[str, Any]]:
    """A recorded launch as pacing sees it; settles its cost once its job has finished."""
    if record.get("settled_usd") is None:
        job = store.get_job(job_id_for_run(JOB_DAG_ID, record["run_id"]))
        if job is not None and job.status in FINISHED_JOB_STATUSES:
            record = {**record, "settled_usd": job.usage.usd}
    in_flight = record.get("settled_usd") is None
    usd = record["size"] * record["max_usd"] if in_flight else record["settled_usd"]
    return Launched(datetime.fromisoformat(record["at"]), record["size"], in_flight, usd), record


def claim_launch(
    store: Store,
    campaign: str,
    campaign_run_id: str,
    run_id: str,
    batch: Sequence[str],
    revision: str,
    bases: dict[str, str | None],
    rollout: Rollout,
    max_usd: float,
    now: datetime | None = None,
) -> Claim:
    """Decide whether this job may start now and, if so, record it (the campaign's state by
    compare-and-swap, then its repositories' entries) before anything is triggered."""
    while True:
        # Full precision: utcnow()'s whole seconds would let launches come up to 1 s early.
        now = now or datetime.now(UTC)
        state, revision_no = store.get_campaign_state(campaign)
        records = list(state.get("launches", []))
        if any(r["run_id"] == run_id for r in records):
            return Claim(Decision(go=True), already=True)
        settled = [_launched(store, r, now) for r in records]
        records = [r for _, r in settled]
        horizon = now - timedelta(seconds=rollout.rate.period if rollout.rate else 0)
        recent = [x for x, _ in settled if x.in_flight or x.at > horizon]
        this_run = [x for x, r in settled if r["campaign_run"] == campaign_run_id]
        total = sum(e.total_usd for e in store.fleet(campaign)) if rollout.budget.total_usd else 0
        # Jobs in flight may still spend up to their limit.
        total += sum(x.usd for x in recent if x.in_flight)
        decision = next_launch(
            rollout, now, len(batch), len(batch) * max_usd, this_run, recent, total
        )
        if not decision.go:
            if decision.stop:
                state = {**state, "launches": records}
                state.setdefault("stopped", {})[campaign_run_id] = decision.reason
                _try_put(store, campaign, state, revision_no)
            return Claim(decision)
        record = {
            "run_id": run_id,
            "campaign_run": campaign_run_id,
            "at": now.isoformat(),
            "size": len(batch),
            "max_usd": max_usd,
            "settled_usd": None,
        }
        keep = [
            r
            for r, (x, _) in zip(records, settled, strict=True)
            if x.in_flight or x.at > horizon or r["campaign_run"] == campaign_run_id
        ]
        try:
            store.put_campaign_state(campaign, {**state, "launches": [*keep, record]}, revision_no)
        except StaleWriteError:
            now = None  # someone launched meanwhile: decide again on what they wrote
            continue
        mark_launched(store, campaign, run_id, batch, revision, bases, now)
        return Claim(decision)


def _try_put(store: Store, campaign: str, state: dict[str, Any], revision: int) -> None:
    with contextlib.suppress(StaleWriteError):  # bookkeeping: the next claim records it again
        store.put_campaign_state(campaign, state, revision)


def mark_launched(
    store: Store,
    campaign: str,
    run_id: str,
    batch: Sequence[str],
    revision: str,
    bases: dict[str, str | None],
    now: datetime,
) -> None:
    entries = []
    for key in batch:
        entry = store.get_fleet(campaign, key) or FleetEntry(campaign, key)
        entry.usd_before = entry.total_usd
        entry.usd = 0.0
        entry.status = FleetStatus.LAUNCHED
        entry.run_id = run_id
        entry.job_id = job_id_for_run(JOB_DAG_ID, run_id)
        entry.launched_at = now
        entry.spec_revision = revision
        entry.base_revision = bases.get(key)
        entry.jobs += 1
        entry.retry = False
        entry.error = entry.error_class = None
        entry.updated_at = now
        entries.append(entry)
    store.put_fleet(entries)


def launched_by_campaign(
    store: Store, campaign: str, run_id: str, repositories: Sequence[str]
) -> bool:
    """True when the campaign launched exactly this run for each of these repositories."""
    keys = [parse_repository(r).key for r in repositories]
    entries = [store.get_fleet(campaign, key) for key in keys]
    return bool(keys) and all(e is not None and e.run_id == run_id for e in entries)


def stopped_reason(store: Store, campaign: str, campaign_run_id: str) -> str | None:
    """Why launching stopped in that campaign run (a budget), if it did."""
    state, _ = store.get_campaign_state(campaign)
    return (state.get("stopped") or {}).get(campaign_run_id)


# burndown

HISTORY = 500  # campaign runs kept for the burndown


def snapshot(
    store: Store, campaign: str, campaign_run_id: str, now: datetime | None = None
) -> dict:
    """Record the whole fleet's state after a campaign run (one burndown point)."""
    entries = [e for e in store.fleet(campaign) if e.member]
    point = {
        "campaign_run": campaign_run_id,
        "at": (now or utcnow()).isoformat(),
        "repositories": len(entries),
        "needing_change": sum(e.needs_change for e in entries),
        "prs_open": sum(e.pr_state == "open" for e in entries),
        "prs_merged": sum(e.pr_state == "merged" for e in entries),
        "failed": sum(e.status == FleetStatus.FAILED for e in entries),
        "usd": round(sum(e.total_usd for e in entries), 6),
    }
    point["done"] = point["repositories"] - point["needing_change"]
    while True:
        state, revision = store.get_campaign_state(campaign)
        history = [p for p in state.get("history", []) if p["campaign_run"] != campaign_run_id]
        state = {**state, "history": [*history, point][-HISTORY:]}
        try:
            store.put_campaign_state(campaign, state, revision)
            return point
        except StaleWriteError:
            continue


def burndown(store: Store, campaign: str) -> list[dict]:
    """The fleet's state after each campaign run, oldest first."""
    state, _ = store.get_campaign_state(campaign)
    return list(state.get("history", []))


# retry


def request_retry(
    store: Store, campaign: str, repositories: Sequence[str] = (), failed: bool = False
) -> list[str]:
    """Mark repositories to run again at the campaign's next run: the named ones and/or every
    failed member. Returns the keys marked; KeyError names a repository not in the fleet."""
    marked: dict[str, FleetEntry] = {}
    for raw in repositories:
        key = parse_repository(raw).key
        entry = store.get_fleet(campaign, key)
        if entry is None or not entry.member:
            raise KeyError(f"{raw} is not a repository of campaign {campaign}")
        marked[key] = entry
    if failed:
        for status in (FleetStatus.FAILED, FleetStatus.CANCELLED):
            after = None
            while page := store.fleet_page(campaign, status=status, after=after, limit=200):
                marked.update((e.repository, e) for e in page if e.member)
                after = page[-1].repository
    for entry in marked.values():
        entry.retry = True
        entry.updated_at = utcnow()
    store.put_fleet(list(marked.values()))
    return sorted(marked)
