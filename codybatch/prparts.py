"""Typed parts of a result for its pull request after opening: approval, fix rounds, merge.

Each part lives under its own key of RepositoryResult.details (approval, rounds, merge)
and round-trips through to_dict/from_dict, so stores keep plain JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from codybatch.records import Usage, utcnow

MAX_HISTORY = 20  # merge attempts kept per result (the newest)


def now_iso() -> str:
    return utcnow().isoformat()


def _from(cls: Any, data: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in names})


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
        self.history = [*self.history, attempt][-MAX_HISTORY:]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> MergePart:
        part = _from(cls, data)
        part.history = [_from(MergeAttempt, h) for h in (data or {}).get("history") or []]
        return part


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

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["usage"] = self.usage.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FixRound:
        part = _from(cls, data)
        part.usage = Usage.from_dict(data.get("usage"))
        return part


@dataclass
class ApprovalPart:
    """A person's decision about publishing a reviewed repository."""

    state: str = "pending"  # pending, approved, rejected, timed_out
    by: str | None = None
    at: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ApprovalPart:
        return _from(cls, data)


def merge_part(details: dict[str, Any]) -> MergePart:
    return MergePart.from_dict(details.get("merge"))


def rounds_of(details: dict[str, Any]) -> list[FixRound]:
    return [FixRound.from_dict(r) for r in details.get("rounds") or []]


def approval_of(details: dict[str, Any]) -> ApprovalPart | None:
    raw = details.get("approval")
    return ApprovalPart.from_dict(raw) if raw else None
