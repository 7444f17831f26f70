"""What the pages say about a result's pull request: state, checks, review, what publishing did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from codybatch.records import RepositoryResult, RepositoryStatus

# details["pull_request"]["action"] (codybatch/publish.py) in words.
ACTIONS = {
    "opened": "opened",
    "updated": "updated: the new change was pushed",
    "unchanged": "unchanged: nothing new to push",
    "closed": "closed: no changes necessary any more",
    "none": "no pull request: no changes necessary",
    "patch_only": "patch only: no push access",
    "failed": "not opened: publishing failed",
    "left_alone_merged": "left alone: merged by a person",
    "left_alone_closed": "left alone: closed by a person",
}
CHECKS = {
    "success": "checks passed",
    "failure": "checks failed",
    "pending": "checks running",
    "none": "no checks",
}
REVIEWS = {
    "approved": "approved",
    "changes_requested": "changes requested",
    "commented": "commented",
    "none": "no review",
}


@dataclass(frozen=True)
class PullRequestView:
    url: str | None
    number: int | None
    state: str | None  # open, merged, closed
    checks: str | None  # success, failure, pending, none
    review: str | None  # approved, changes_requested, commented, none
    refreshed_at: datetime | None
    action: str | None
    action_text: str | None
    reason: str | None
    skipped_reason: str | None  # why a SKIPPED repository was not touched

    @property
    def checks_text(self) -> str | None:
        return CHECKS.get(self.checks or "", self.checks)

    @property
    def review_text(self) -> str | None:
        return REVIEWS.get(self.review or "", self.review)


def _when(raw: object) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def pull_request_view(result: RepositoryResult) -> PullRequestView | None:
    """The result's PR facts for a page; None when there is nothing to say about a PR."""
    details = result.details or {}
    pr = details.get("pull_request") or {}
    tracking = details.get("tracking") or {}
    if not isinstance(pr, dict):
        pr = {}
    if not isinstance(tracking, dict):
        tracking = {}
    action = _text(pr.get("action"))
    reason = _text(pr.get("reason"))
    state = _text(result.pr_state or tracking.get("state") or pr.get("state"))
    skipped = None
    if result.status == RepositoryStatus.SKIPPED:
        skipped = reason or _text(result.summary) or "skipped"
    if not (result.pr_url or action or state or skipped):
        return None
    number = result.pr_number if result.pr_number is not None else pr.get("number")
    return PullRequestView(
        url=result.pr_url or _text(pr.get("url")),
        number=int(number) if isinstance(number, int | str) and str(number).isdigit() else None,
        state=state,
        checks=_text(tracking.get("checks")),
        review=_text(tracking.get("review")),
        refreshed_at=_when(tracking.get("refreshed_at")),
        action=action,
        action_text=ACTIONS.get(action or "", action),
        reason=reason,
        skipped_reason=skipped,
    )
