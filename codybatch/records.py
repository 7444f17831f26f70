"""The data model: jobs, repository results, statuses and usage."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

RETENTION = timedelta(days=30)


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class RepositoryStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


FINISHED_REPOSITORY_STATUSES = frozenset(
    {
        RepositoryStatus.COMPLETED,
        RepositoryStatus.FAILED,
        RepositoryStatus.CANCELLED,
        RepositoryStatus.SKIPPED,
    }
)
FINISHED_JOB_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
)


def utcnow() -> datetime:
    """Now, timezone-aware, second precision (what the stores keep)."""
    return datetime.now(UTC).replace(microsecond=0)


def expiry(now: datetime | None = None) -> datetime:
    """When an item written now expires (the TTL)."""
    return (now or utcnow()) + RETENTION


@dataclass
class Usage:
    """Tokens and cost of Claude calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            round(self.usd + other.usd, 6),
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            int(data.get("cache_creation_input_tokens", 0)),
            int(data.get("cache_read_input_tokens", 0)),
            float(data.get("usd", 0.0)),
        )


@dataclass
class Job:
    """One prompt applied to up to five repositories; one DAG run."""

    job_id: str
    spec: dict[str, Any]
    status: JobStatus = JobStatus.PENDING
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    expires_at: datetime = field(default_factory=expiry)
    dag_id: str | None = None
    run_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a deprecated model, from validate

    @property
    def name(self) -> str:
        return self.spec.get("name", "")

    @property
    def repositories(self) -> list[str]:
        return list(self.spec.get("repositories", []))

    def pending_results(self) -> list[RepositoryResult]:
        """A PENDING result per repository, as a store writes them with the job."""
        return [
            RepositoryResult(
                job_id=self.job_id,
                repository=repository,
                created_at=self.created_at,
                updated_at=self.created_at,
                expires_at=self.expires_at,
            )
            for repository in self.repositories
        ]

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(
            job_id=data["job_id"],
            spec=data["spec"],
            status=JobStatus(data["status"]),
            created_at=_dt(data["created_at"]),
            updated_at=_dt(data["updated_at"]),
            expires_at=_dt(data["expires_at"]),
            dag_id=data.get("dag_id"),
            run_id=data.get("run_id"),
            usage=Usage.from_dict(data.get("usage")),
            error=data.get("error"),
            warnings=list(data.get("warnings") or []),
        )


class Phase(StrEnum):
    """Where a repository's worker is (progress), or where it failed."""

    QUEUED = "queued"
    CHECKING = "checking"
    CLONING = "cloning"
    STEPS = "steps"
    CLAUDE = "claude"
    VERIFY = "verify"
    DIFF = "diff"
    PUBLISHING = "publishing"
    DONE = "done"


# The typed parts of a repository's result. Each is a plain dataclass; `encode`/`decode`
# store them (decode ignores unknown keys and fills missing ones, so old records still read).
# To add a part: a dataclass here, a field on RepositoryResult with a default, a test.


@dataclass
class CommandRun:
    """One shell step: what ran, how it ended, the (bounded, redacted) output."""

    command: str
    exit_code: int | None = None
    output: str = ""
    seconds: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class Verification:
    """The verify command's last run and how many runs and fix rounds it took."""

    command: str
    passed: bool
    exit_code: int | None = None
    output: str = ""
    timed_out: bool = False
    seconds: float = 0.0
    rounds: int = 1
    fix_rounds: int = 0


@dataclass
class ShellTerms:
    """Whether Claude's session was offered run_command, and on what terms."""

    offered: bool
    reason: str = ""  # why not, when not offered
    timeout: int = 120
    network: bool = False
    allowed: list[str] = field(default_factory=list)


@dataclass
class InstructionsUsed:
    """The repository's instruction files given to Claude (and those cut to fit)."""

    files: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)


@dataclass
class AgentSession:
    """How Claude's session ended (the thread itself is stored beside the result)."""

    stop_reason: str
    limit: str | None = None
    summary: str | None = None
    pr_title: str | None = None
    changes_claimed: bool | None = None
    turns: int = 0
    error: str | None = None
    model: str | None = None
    price_known: bool = True  # False: costs are at the conservative rate (see the thread)
    shell: ShellTerms | None = None
    instructions: InstructionsUsed | None = None


@dataclass
class Publishing:
    """What publishing did to the pull request (action: opened, updated, failed, ...)."""

    action: str
    reason: str = ""
    branch: str | None = None
    number: int | None = None
    url: str | None = None
    state: str | None = None


@dataclass
class Tracking:
    """The pull request as GitHub last reported it."""

    state: str | None = None
    checks: str | None = None  # success, failure, pending, none
    review: str | None = None  # approved, changes_requested, commented, none
    head_sha: str | None = None
    mergeable: bool | None = None
    mergeable_state: str | None = None
    labels: list[str] = field(default_factory=list)
    auto_merge: bool = False
    refreshed_at: datetime | None = None


def now_iso() -> str:
    return utcnow().isoformat()


@dataclass
class FixRound:
    """One follow-up round on an open PR: what triggered it and what it did."""

    number: int
    trigger: str  # failing_check, changes_requested, review_comments, command, conflict
    trigger_detail: str = ""
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    outcome: str = "running"  # pushed, rebased, no_change, stopped, failed
    note: str = ""
    summary: str = ""
    head_before: str | None = None
    head_after: str | None = None
    changed_files: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    patch: str = ""  # the round's own change (text patch), bounded
    thread_key: str | None = None  # the store's thread name of the round
    reply_url: str | None = None
    seen: list[int] = field(default_factory=list)  # comment/review ids this round answered


@dataclass
class ApprovalPart:
    """A person's decision about publishing a reviewed repository."""

    state: str = "pending"  # pending, approved, rejected, timed_out
    by: str | None = None
    at: str | None = None
    note: str = ""


MAX_MERGE_HISTORY = 20  # merge attempts kept per result (the newest)


@dataclass
class MergeAttempt:
    """One decision about merging: merged, refused, auto_merge (enabled) or failed."""

    outcome: str
    reason: str
    at: str = field(default_factory=now_iso)
    by: str = "tracking"  # tracking, cli, ui or a person's name
    sha: str | None = None  # the head that was judged (merged when outcome is merged)
    method: str | None = None


@dataclass
class MergePart:
    """The merge state of a result's PR: the last decision and the ones before it."""

    mode: str = "off"  # the job's merge setting when decided
    state: str = "waiting"  # waiting, merged, refused, auto_merge, failed
    reason: str = ""
    at: str | None = None
    merge_sha: str | None = None
    branch_deleted: bool | None = None
    history: list[MergeAttempt] = field(default_factory=list)

    def record(self, attempt: MergeAttempt) -> None:
        self.state, self.reason, self.at = attempt.outcome, attempt.reason, attempt.at
        last = self.history[-1] if self.history else None
        if last and (last.outcome, last.reason, last.sha) == (
            attempt.outcome,
            attempt.reason,
            attempt.sha,
        ):
            last.at = attempt.at  # the same refusal again: one entry, the latest time
            return
        self.history = [*self.history, attempt][-MAX_MERGE_HISTORY:]


@dataclass
class Progress:
    """What the worker is doing now: written as it changes, at most every few seconds."""

    phase: Phase = Phase.QUEUED
    turn: int = 0
    usage: Usage = field(default_factory=Usage)
    last_tool: str | None = None
    detail: str | None = None  # e.g. the step's command
    batch_job_id: str | None = None  # the AWS Batch job running the worker (its log)
    updated_at: datetime | None = None


@dataclass
class RepositoryResult:
    """What happened to one repository of a job.

    `revision` counts writes; stores refuse a write whose revision is not the one
    they hold, so a late or retried worker never overwrites a newer state.
    """

    job_id: str
    repository: str
    status: RepositoryStatus = RepositoryStatus.PENDING
    were_changes_necessary: bool | None = None
    summary: str | None = None
    pr_title: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None
    error: str | None = None
    failed_phase: Phase | None = None  # where `error` happened
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    has_patch: bool = False
    has_thread: bool = False
    base_branch: str | None = None
    changed_files: list[str] = field(default_factory=list)
    steps: list[CommandRun] = field(default_factory=list)
    agent: AgentSession | None = None
    verify: Verification | None = None
    publishing: Publishing | None = None
    tracking: Tracking | None = None
    fix_rounds: list[FixRound] = field(default_factory=list)
    followup_stopped: str | None = None  # why follow-ups stopped (e.g. max_fix_rounds reached)
    approval: ApprovalPart | None = None
    merge: MergePart | None = None
    progress: Progress = field(default_factory=Progress)
    instructions: list[str] = field(default_factory=list)  # repository instruction files used
    warnings: list[str] = field(default_factory=list)  # shown beside the result, not failures
    attempts: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime = field(default_factory=expiry)
    revision: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_REPOSITORY_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepositoryResult:
        data = dict(data)
        legacy = data.pop("details", None)
        if isinstance(legacy, dict):
            data = _from_details(legacy) | data
        return decode(cls, data)


def _from_details(details: dict[str, Any]) -> dict[str, Any]:
    """The typed parts of a record written before they existed (its `details` dict)."""
    out: dict[str, Any] = {}
    for old, new in (
        ("steps", "steps"),
        ("agent", "agent"),
        ("verify", "verify"),
        ("pull_request", "publishing"),
        ("tracking", "tracking"),
        ("base_branch", "base_branch"),
        ("changed_files", "changed_files"),
        ("rounds", "fix_rounds"),
        ("followup_stopped", "followup_stopped"),
        ("approval", "approval"),
        ("merge", "merge"),
    ):
        if details.get(old) is not None:
            out[new] = details[old]
    if details.get("disagreement"):
        out["warnings"] = [details["disagreement"]]
    if details.get("publish_failed"):
        out["failed_phase"] = Phase.PUBLISHING.value
    return out


def job_status_from_results(results: list[RepositoryResult]) -> JobStatus:
    """COMPLETED when all succeeded, FAILED when none did, PARTIAL otherwise."""
    statuses = [r.status for r in results]
    if not statuses:
        return JobStatus.FAILED
    if all(s == RepositoryStatus.CANCELLED for s in statuses):
        return JobStatus.CANCELLED
    ok = [s for s in statuses if s in (RepositoryStatus.COMPLETED, RepositoryStatus.SKIPPED)]
    if len(ok) == len(statuses):
        return JobStatus.COMPLETED
    if not ok:
        if RepositoryStatus.CANCELLED in statuses:
            return JobStatus.CANCELLED
        return JobStatus.FAILED
    return JobStatus.PARTIAL


def encode(value: Any) -> Any:
    """A record (or any part of one) as JSON-able data: dicts, lists, str, numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(kind: Any, data: Any) -> Any:
    """The inverse of `encode`, driven by type hints; unknown keys are ignored."""
    if data is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        return decode(next(a for a in args if a is not type(None)), data)
    if origin is list:
        return [decode(args[0], v) for v in data]
    if origin is dict:
        return dict(data)
    if dataclasses.is_dataclass(kind):
        if isinstance(data, kind):
            return data
        hints = _hints(kind)
        return kind(
            **{
                f.name: decode(hints[f.name], data[f.name])
                for f in dataclasses.fields(kind)
                if f.name in data and (data[f.name] is not None or _optional(hints[f.name]))
            }
        )
    if kind is datetime:
        return _dt(data)
    if kind is bool:
        return bool(data)
    if kind in (int, float, str) or (isinstance(kind, type) and issubclass(kind, StrEnum)):
        return kind(data)
    return data


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _optional(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def _dt(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def job_id_for_run(dag_id: str, run_id: str) -> str:
    """The job id of a DAG run: stable across task retries, computable before the run starts."""
    import uuid

    return "job-" + uuid.uuid5(uuid.NAMESPACE_URL, f"codybatch:{dag_id}/{run_id}").hex[:16]
