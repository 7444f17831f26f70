"""What the pages say about a result's pull request: state, checks, review, what publishing did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from codybatch.records import Publishing, RepositoryResult, RepositoryStatus, Tracking

# Publishing.action (codybatch/publish.py) in words.
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


def pull_request_view(result: RepositoryResult) -> PullRequestView | None:
    """The result's PR facts for a page; None when there is nothing to say about a PR."""
    pr = result.publishing or Publishing(action="")
    tracking = result.tracking or Tracking()
    action = pr.action or None
    reason = pr.reason or None
    state = result.pr_state or tracking.state or pr.state
    skipped = None
    if result.status == RepositoryStatus.SKIPPED:
        skipped = reason or result.summary or "skipped"
    if not (result.pr_url or action or state or skipped):
        return None
    return PullRequestView(
        url=result.pr_url or pr.url,
        number=result.pr_number if result.pr_number is not None else pr.number,
        state=state,
        checks=tracking.checks,
        review=tracking.review,
        refreshed_at=tracking.refreshed_at,
        action=action,
        action_text=ACTIONS.get(action or "", action),
        reason=reason,
        skipped_reason=skipped,
    )
