"""PR tracking: refresh the state, checks and reviews of the pull requests Cody Batch opened."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from github import Github
from github.PullRequest import PullRequest

from codybatch.github import GitHubError, client, github_call
from codybatch.publish import pull_state
from codybatch.records import RepositoryResult, utcnow
from codybatch.settings import Settings
from codybatch.spec import parse_repository
from codybatch.store import StaleWriteError, Store

log = logging.getLogger("codybatch.tracking")

# States worth asking GitHub about again; merged and closed do not change by themselves.
LIVE_STATES = frozenset({"open"})


@dataclass
class Tracked:
    job_id: str
    repository: str
    pr_number: int
    before: str | None
    after: str | None
    checks: str | None = None
    review: str | None = None
    error: str | None = None


def checks_state(pull: PullRequest) -> str:
    """success, failure, pending or none: commit statuses and check runs of the PR's head."""
    commit = pull.base.repo.get_commit(pull.head.sha)
    states = []
    combined = commit.get_combined_status()
    if combined.total_count:
        states.append(combined.state)
    for run in commit.get_check_runs():
        if run.status != "completed":
            states.append("pending")
        elif run.conclusion in ("success", "neutral", "skipped"):
            states.append("success")
        else:
            states.append("failure")
    if not states:
        return "none"
    if "failure" in states or "error" in states:
        return "failure"
    return "pending" if "pending" in states else "success"


def review_state(pull: PullRequest) -> str:
    """approved, changes_requested, commented or none: each reviewer's latest review counts."""
    latest: dict[str, str] = {}
    for review in pull.get_reviews():
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"):
            latest[review.user.login] = review.state
    states = set(latest.values())
    if "CHANGES_REQUESTED" in states:
        return "changes_requested"
    if "APPROVED" in states:
        return "approved"
    return "commented" if "COMMENTED" in states else "none"


def refresh(result: RepositoryResult, gh: Github, settings: Settings) -> dict[str, Any]:
    """Ask GitHub for one PR's state, checks and review; return the tracking record."""
    repo = parse_repository(result.repository)

    def fetch() -> dict[str, Any]:
        pull = gh.get_repo(f"{repo.owner}/{repo.name}").get_pull(int(result.pr_number or 0))
        state = pull_state(pull)
        return {
            "state": state,
            "checks": checks_state(pull) if state == "open" else None,
            "review": review_state(pull),
            "refreshed_at": utcnow().isoformat(),
        }

    return github_call(settings, f"reading pull request #{result.pr_number}", fetch)


def pull_requests_to_track(store: Store, limit: int = 1000) -> list[RepositoryResult]:
    """Results whose pull request is still open, over the stored jobs (newest first)."""
    found = []
    for job in store.list_jobs(limit=limit):
        found.extend(
            r for r in store.list_results(job.job_id) if r.pr_number and r.pr_state in LIVE_STATES
        )
    return found


def track_pull_requests(store: Store, settings: Settings) -> list[Tracked]:
    """Refresh every open PR Cody Batch opened and store it; one failure never stops the rest."""
    tracked = []
    gh = client(settings)  # one client (and HTTP session) for the whole sweep
    for result in pull_requests_to_track(store):
        item = Tracked(
            result.job_id, result.repository, int(result.pr_number or 0), result.pr_state, None
        )
        try:
            record = refresh(result, gh, settings)
        except GitHubError as exc:
            item.error = str(exc)
            log.warning("%s #%s: %s", result.repository, result.pr_number, exc)
            tracked.append(item)
            continue
        item.after, item.checks, item.review = record["state"], record["checks"], record["review"]
        for _ in range(3):
            result.pr_state = record["state"]
            result.details["tracking"] = record
            try:
                store.save_result(result)
                break
            except StaleWriteError:  # a worker wrote meanwhile: apply on top of its record
                fresh = store.get_result(result.job_id, result.repository)
                if fresh is None:
                    break
                result = fresh
        tracked.append(item)
    return tracked
