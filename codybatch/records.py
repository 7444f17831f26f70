"""The data model: jobs, repository results, statuses and usage."""

from __future__ import annotations

import dataclasses
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
        return _encode(self)

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


@dataclass
class RepositoryResult:
    """What happened to one repository of a job.

    `revision` counts writes; stores refuse a write whose revision is not the one
    they hold, so a late or retried worker never overwrites a newer state.
    `details` holds the rest of the record (steps, verify, agent facts, PR facts).
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
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    has_patch: bool = False
    has_thread: bool = False
    details: dict[str, Any] = field(default_factory=dict)
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
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepositoryResult:
        kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        kwargs["status"] = RepositoryStatus(kwargs.get("status", "PENDING"))
        kwargs["usage"] = Usage.from_dict(data.get("usage"))
        for name in ("created_at", "updated_at", "started_at", "finished_at", "expires_at"):
            if kwargs.get(name) is not None:
                kwargs[name] = _dt(kwargs[name])
        if kwargs.get("pr_number") is not None:
            kwargs["pr_number"] = int(kwargs["pr_number"])
        kwargs["revision"] = int(kwargs.get("revision", 0))
        kwargs["attempts"] = int(kwargs.get("attempts", 0))
        return cls(**kwargs)


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


def _encode(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Usage):
            value = value.to_dict()
        elif isinstance(value, StrEnum):
            value = value.value
        out[f.name] = value
    return out


def _dt(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def job_id_for_run(dag_id: str, run_id: str) -> str:
    """The job id of a DAG run: stable across task retries, computable before the run starts."""
    import uuid

    return "job-" + uuid.uuid5(uuid.NAMESPACE_URL, f"codybatch:{dag_id}/{run_id}").hex[:16]
