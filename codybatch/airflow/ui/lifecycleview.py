"""What a job page says about a PR's life after opening: approval, fix rounds, merge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from codybatch.airflow.ui.diffview import parse_patch
from codybatch.records import FixRound, MergeAttempt, RepositoryResult, Usage

APPROVAL_STATES = {
    "pending": "waiting for a person's approval",
    "approved": "approved",
    "rejected": "rejected: stays patch-only",
    "timed_out": "timed out: nothing published",
}
TRIGGERS = {
    "failing_check": "a failing check",
    "changes_requested": "changes requested",
    "review_comments": "review comments",
    "command": "a /codybatch fix comment",
    "conflict": "a conflict with the base branch",
}
OUTCOMES = {
    "running": "running",
    "pushed": "pushed a fix",
    "rebased": "rebased",
    "no_change": "no change",
    "stopped": "stopped",
    "failed": "failed",
}
MERGE_STATES = {
    "waiting": "not decided yet",
    "merged": "merged",
    "refused": "not merged",
    "auto_merge": "auto-merge on",
    "failed": "merge failed",
}


def when(value: str | None) -> str | None:
    """An ISO time as the pages print times; the raw text when it does not parse."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return value


@dataclass(frozen=True)
class ApprovalView:
    state: str  # pending, approved, rejected, timed_out
    text: str
    by: str | None
    at: str | None
    note: str


@dataclass(frozen=True)
class RoundView:
    number: int
    trigger: str
    trigger_text: str
    detail: str
    outcome: str
    outcome_text: str
    changed: str  # "2 files, +3 -1", or "no change"
    note: str
    summary: str
    usage: Usage
    started_at: str | None
    patch_url: str | None
    thread_url: str | None
    reply_url: str | None


@dataclass(frozen=True)
class MergeView:
    mode: str
    state: str
    text: str
    reason: str
    at: str | None
    by: str | None
    branch_deleted: bool | None
    earlier: list[MergeAttempt]


@dataclass(frozen=True)
class LifecycleView:
    approval: ApprovalView | None
    rounds: list[RoundView]
    rounds_usage: Usage
    followup_stopped: str | None
    merge: MergeView | None

    @property
    def empty(self) -> bool:
        return not (self.approval or self.rounds or self.followup_stopped or self.merge)


def changed_text(fix: FixRound) -> str:
    """The round's diffstat, from its kept patch; "no change" when it changed nothing."""
    files = parse_patch(fix.patch) if fix.patch else []
    if not files:
        if fix.outcome == "rebased":
            return "rebased only: no new change"
        if fix.changed_files:
            return f"{len(fix.changed_files)} files"
        return "no change"
    added = sum(f.additions for f in files)
    removed = sum(f.deletions for f in files)
    return f"{len(files)} file{'s' if len(files) != 1 else ''}, +{added} -{removed}"


def round_view(result: RepositoryResult, fix: FixRound, root: str) -> RoundView:
    base = f"{root}/jobs/{quote(result.job_id, safe='')}/rounds/{fix.number}"
    name = quote(result.repository, safe="")
    return RoundView(
        number=fix.number,
        trigger=fix.trigger,
        trigger_text=TRIGGERS.get(fix.trigger, fix.trigger),
        detail=fix.trigger_detail,
        outcome=fix.outcome,
        outcome_text=OUTCOMES.get(fix.outcome, fix.outcome),
        changed=changed_text(fix),
        note=fix.note,
        summary=fix.summary,
        usage=fix.usage,
        started_at=when(fix.started_at),
        patch_url=f"{base}/patch/{name}" if fix.patch else None,
        thread_url=f"{base}/thread/{name}" if fix.thread_key else None,
        reply_url=fix.reply_url,
    )


def lifecycle_view(result: RepositoryResult, root: str) -> LifecycleView:
    """Approval, fix rounds and merge state of one result, in words for the job page."""
    approval = None
    if result.approval is not None:
        part = result.approval
        approval = ApprovalView(
            part.state, APPROVAL_STATES.get(part.state, part.state), part.by, when(part.at),
            part.note,
        )  # fmt: skip
    merge = None
    if result.merge is not None:
        part = result.merge
        last = part.history[-1] if part.history else None
        merge = MergeView(
            mode=part.mode,
            state=part.state,
            text=MERGE_STATES.get(part.state, part.state),
            reason=part.reason,
            at=when(part.at),
            by=last.by if last else None,
            branch_deleted=part.branch_deleted,
            earlier=list(reversed(part.history[:-1]))[:5],
        )
    rounds = [round_view(result, fix, root) for fix in result.fix_rounds]
    usage = Usage()
    for fix in result.fix_rounds:
        usage = usage + fix.usage
    return LifecycleView(approval, rounds, usage, result.followup_stopped, merge)
