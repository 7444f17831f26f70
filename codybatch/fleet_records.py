"""The fleet of a campaign as the store keeps it: one entry per (campaign, repository)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from codybatch.records import utcnow


class FleetStatus(StrEnum):
    """A repository's latest state in its campaign: its latest job's status, or before one."""

    NEW = "NEW"  # selected, never launched
    LAUNCHED = "LAUNCHED"  # a job was started for it and has not finished
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


IN_FLIGHT = frozenset({FleetStatus.LAUNCHED})


class ErrorClass(StrEnum):
    """Why a repository failed, in the words a fleet owner filters by."""

    CLONE_FAILED = "clone_failed"
    NO_ACCESS = "no_access"
    ARCHIVED = "archived"
    CLAUDE_LIMIT = "claude_limit"
    CLAUDE_ERROR = "claude_error"
    STEP_FAILED = "step_failed"
    VERIFY_FAILED = "verify_failed"
    PUSH_REJECTED = "push_rejected"
    GITHUB_ERROR = "github_error"
    WORKER_LOST = "worker_lost"
    NOT_STARTED = "not_started"
    CANCELLED = "cancelled"
    OTHER = "other"


@dataclass
class FleetEntry:
    """One repository of a campaign: membership, its latest job, and that job's outcome."""

    campaign: str
    repository: str
    member: bool = True
    joined_at: datetime = field(default_factory=utcnow)
    left_at: datetime | None = None
    left_reason: str | None = None
    status: FleetStatus = FleetStatus.NEW
    job_id: str | None = None
    run_id: str | None = None
    launched_at: datetime | None = None
    spec_revision: str | None = None  # of the spec its latest job ran
    base_revision: str | None = None  # the base branch's commit when that job was planned
    changed: bool | None = None  # whether its latest job found a change to make
    pr_url: str | None = None
    pr_number: int | None = None
    pr_state: str | None = None
    checks: str | None = None
    rounds: int | None = None
    merge_state: str | None = None  # the last merge decision: merged, refused, auto_merge, ...
    merge_reason: str | None = None
    usd: float = 0.0  # the latest job's spend on this repository
    usd_before: float = 0.0  # earlier jobs' spend on it
    jobs: int = 0
    error: str | None = None
    error_class: ErrorClass | None = None
    done_reason: str | None = None  # merged, or left alone because a person closed it
    retry: bool = False  # a person asked to run it again (`codybatch campaign retry`)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def needs_change(self) -> bool:
        """Still to be changed: not merged, not left to a person, not found already done."""
        if not self.member or self.done_reason:
            return False
        return not (
            self.status in (FleetStatus.COMPLETED, FleetStatus.SKIPPED) and self.changed is False
        )

    @property
    def total_usd(self) -> float:
        return round(self.usd + self.usd_before, 6)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = value.value
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FleetEntry:
        kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        for name in ("joined_at", "left_at", "launched_at", "updated_at"):
            if isinstance(kwargs.get(name), str):
                kwargs[name] = datetime.fromisoformat(kwargs[name])
        kwargs["status"] = FleetStatus(kwargs.get("status", "NEW"))
        if kwargs.get("error_class"):
            kwargs["error_class"] = ErrorClass(kwargs["error_class"])
        for name in ("usd", "usd_before"):
            kwargs[name] = float(kwargs.get(name) or 0.0)
        for name in ("jobs", "rounds", "pr_number"):
            if kwargs.get(name) is not None:
                kwargs[name] = int(kwargs[name])
        return cls(**kwargs)


@dataclass
class FleetCounts:
    """Roll-up of a campaign's fleet (members only): by status, by error class, cost."""

    members: int = 0
    left: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)
    prs_open: int = 0
    prs_merged: int = 0
    usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
