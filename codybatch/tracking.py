"""PR tracking: refresh the state, checks and reviews of the pull requests Cody Batch opened."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from github import Github
from github.PullRequest import PullRequest

from codybatch.github import github_call
from codybatch.publish import pull_state
from codybatch.records import Job, RepositoryResult, Tracking, utcnow
from codybatch.settings import Settings
from codybatch.spec import JobSpec, SpecError, parse_repository
from codybatch.store import NotFoundError, StaleWriteError, Store

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
    merge: str | None = None  # what the merge setting decided, with its reason


def check_states(pull: PullRequest) -> dict[str, str]:
    """success, failure or pending per check name (commit statuses and check runs of the head)."""
    commit = pull.base.repo.get_commit(pull.head.sha)
    states: dict[str, str] = {}
    combined = commit.get_combined_status()
    for status in combined.statuses if combined.total_count else []:
        states[status.context] = {"error": "failure"}.get(status.state, status.state)
    for run in commit.get_check_runs():
        if run.status != "completed":
            states[run.name] = "pending"
        elif run.conclusion in ("success", "neutral", "skipped"):
            states[run.name] = "success"
        else:
            states[run.name] = "failure"
    return states


def checks_state(pull: PullRequest) -> str:
    """success, failure, pending or none: commit statuses and check runs of the PR's head."""
    states = set(check_states(pull).values())
    if not states:
        return "none"
    if "failure" in states:
        return "failure"
    return "pending" if "pending" in states else "success"


def latest_reviews(pull: PullRequest) -> dict[str, str]:
    """Each reviewer's latest deciding review: APPROVED, CHANGES_REQUESTED or DISMISSED."""
    latest: dict[str, str] = {}
    for review in pull.get_reviews():
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[review.user.login] = review.state
    return latest


def review_state(pull: PullRequest) -> str:
    """approved, changes_requested, commented or none: each reviewer's latest review counts."""
    states = set(latest_reviews(pull).values())
    if "CHANGES_REQUESTED" in states:
        return "changes_requested"
    if "APPROVED" in states:
        return "approved"
    commented = any(r.state == "COMMENTED" for r in pull.get_reviews())
    return "commented" if commented else "none"


def fetch_pull(result: RepositoryResult, gh: Github) -> PullRequest:
    repo = parse_repository(result.repository)
    return gh.get_repo(f"{repo.owner}/{repo.name}").get_pull(int(result.pr_number or 0))


def tracking_record(pull: PullRequest) -> Tracking:
    """What tracking keeps about a PR: state, checks, review, mergeability, labels."""
    state = pull_state(pull)
    return Tracking(
        state=state,
        checks=checks_state(pull) if state == "open" else None,
        review=review_state(pull),
        head_sha=pull.head.sha,
        mergeable=pull.mergeable if state == "open" else None,
        mergeable_state=pull.mergeable_state if state == "open" else None,
        labels=[label.name for label in pull.labels],
        auto_merge=bool(pull.raw_data.get("auto_merge")),
        refreshed_at=utcnow(),
    )


def read_pull(result: RepositoryResult, gh: Github) -> tuple[PullRequest, Tracking]:
    """The result's pull request and what tracking keeps about it."""
    pull = fetch_pull(result, gh)
    return pull, tracking_record(pull)


def refresh(result: RepositoryResult, gh: Github, settings: Settings) -> Tracking:
    """Ask GitHub for one PR's state, checks and review; return the tracking record."""
    return github_call(
        settings,
        f"reading pull request #{result.pr_number}",
        lambda: tracking_record(fetch_pull(result, gh)),
    )


def stored_spec(job: Job, settings: Settings) -> JobSpec | None:
    """The job's spec as stored (the allowlist is checked by whoever acts on a repository)."""
    try:
        unrestricted = dataclasses.replace(settings, allowed_repositories=())
        return JobSpec.parse(job.spec, unrestricted, check_local=False)
    except SpecError as exc:
        log.warning("job %s: its spec no longer parses: %s", job.job_id, exc)
        return None


def save_with_retry(
    store: Store, result: RepositoryResult, fields: tuple[str, ...]
) -> RepositoryResult:
    """Save result; when someone wrote meanwhile, copy `fields` onto the fresh record (the
    store's compare-and-swap), so neither write is lost."""
    with contextlib.suppress(StaleWriteError):
        return store.save_result(result)

    def copy_fields(fresh: RepositoryResult) -> None:
        for name in fields:
            setattr(fresh, name, getattr(result, name))

    try:
        return store.update_result(result.job_id, result.repository, copy_fields)
    except NotFoundError:
        return result


def pull_requests_to_track(store: Store) -> list[tuple[Job, list[RepositoryResult]]]:
    """Per job (newest first), its results whose pull request is still open: the store's
    PR-state index, so the sweep reads only live pull requests however many jobs there are."""
    live: dict[str, list[RepositoryResult]] = {}
    for state in sorted(LIVE_STATES):
        for result in store.results_with_pr_state(state):
            if result.pr_number:
                live.setdefault(result.job_id, []).append(result)
    found = []
    for job_id, results in live.items():
        job = store.get_job(job_id)
        if job is not None:  # a result outliving its job (purged meanwhile) is not tracked
            order = {name: i for i, name in enumerate(job.repositories)}
            results.sort(key=lambda r: order.get(r.repository, len(order)))
            found.append((job, results))
    return found
