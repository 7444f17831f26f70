"""Merge when green: decide whether a PR may merge, merge it or turn on GitHub's auto-merge.

The rule is microplane's: every required check passed, the review approved, GitHub says
the PR is mergeable. Never a failing or pending required check, a requested change, a
draft, or a person's "do not merge" label. Every decision is recorded with its reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from github import Github, GithubException
from github.PullRequest import PullRequest

from codybatch.github import GitHubError, client, describe, github_call
from codybatch.records import MergeAttempt, MergePart, RepositoryResult
from codybatch.redact import redact_text
from codybatch.settings import Settings
from codybatch.spec import JobSpec, SpecError
from codybatch.store import Store
from codybatch.tracking import check_states, fetch_pull, latest_reviews, save_with_retry

log = logging.getLogger("codybatch.merge")

# Label names (lower case, separators folded to spaces) that stop every merge.
DO_NOT_MERGE = frozenset({"do not merge", "dont merge", "don't merge", "dnm", "no merge", "hold"})


class MergeError(Exception):
    """A merge request that cannot start (unknown job or repository)."""


@dataclass(frozen=True)
class Verdict:
    ready: bool
    reason: str


def required_checks(pull: PullRequest) -> list[str] | None:
    """Check names the base branch's protection requires; None when it requires none."""
    branch = pull.base.repo.get_branch(pull.base.ref)
    protection = (branch.raw_data or {}).get("protection") or {}
    contexts = (protection.get("required_status_checks") or {}).get("contexts") or []
    return list(contexts) or None


def verdict(pull: PullRequest) -> Verdict:
    """May this PR merge now? The first reason it may not, in words."""
    if pull.merged_at is not None:
        return Verdict(False, "already merged")
    if pull.state != "open":
        return Verdict(False, "the pull request is closed")
    held = [lbl.name for lbl in pull.labels if _folded(lbl.name) in DO_NOT_MERGE]
    if held:
        return Verdict(False, f'labelled "{held[0]}": a person asked not to merge')
    if pull.draft:
        return Verdict(False, "still a draft: mark it ready for review first")
    states = check_states(pull)
    required = required_checks(pull)
    # Without branch protection we cannot tell which checks matter: every check counts.
    judged = {name: states.get(name, "pending") for name in required} if required else states
    failing = sorted(n for n, s in judged.items() if s == "failure")
    if failing:
        return Verdict(False, f"required check {', '.join(failing)} failed")
    pending = sorted(n for n, s in judged.items() if s != "success")
    if pending:
        return Verdict(False, f"required check {', '.join(pending)} has not passed yet")
    reviews = latest_reviews(pull)
    asked = sorted(u for u, s in reviews.items() if s == "CHANGES_REQUESTED")
    if asked:
        return Verdict(False, f"changes requested by {', '.join(asked)}")
    if "APPROVED" not in reviews.values():
        return Verdict(False, "no approving review yet")
    if pull.mergeable is None:
        return Verdict(False, "GitHub has not computed mergeability yet: next time")
    if not pull.mergeable or pull.mergeable_state == "dirty":
        return Verdict(False, "conflicts with the base branch: a follow-up must rebase it")
    if pull.mergeable_state in ("blocked", "behind", "draft"):
        return Verdict(False, f"GitHub reports the merge as {pull.mergeable_state}")
    return Verdict(True, "every required check passed, approved and mergeable")


def _folded(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def merge_when_green(pull: PullRequest, spec: JobSpec, by: str, settings: Settings) -> MergeAttempt:
    """Merge the PR if the rule allows it (head pinned to what was judged); say why not."""
    head = pull.head.sha
    judged = verdict(pull)
    if not judged.ready:
        return MergeAttempt("refused", judged.reason, by=by, sha=head)
    try:
        done = pull.merge(
            merge_method=spec.merge_method,
            sha=head,
            commit_title=f"{pull.title} (#{pull.number})",
        )
    except GithubException as exc:
        # 405: GitHub's own rules refuse it; 409: someone pushed since we judged the head.
        reason = redact_text(describe(exc), settings.secrets)
        outcome = "refused" if exc.status in (405, 409, 422) else "failed"
        return MergeAttempt(outcome, f"GitHub refused the merge: {reason}", by=by, sha=head)
    reason = f"{spec.merge_method}: {judged.reason}"
    return MergeAttempt("merged", reason, by=by, sha=done.sha, method=spec.merge_method)


def enable_auto_merge(
    pull: PullRequest, spec: JobSpec, by: str, settings: Settings
) -> MergeAttempt:
    """Turn on GitHub's auto-merge; a PR already mergeable is merged by our rule instead."""
    head = pull.head.sha
    if pull.raw_data.get("auto_merge"):
        return MergeAttempt("auto_merge", "auto-merge is on: GitHub merges when it may", by=by)
    judged = verdict(pull)
    if judged.reason.startswith("labelled") or judged.reason.startswith("still a draft"):
        return MergeAttempt("refused", judged.reason, by=by, sha=head)
    try:
        pull.enable_automerge(merge_method=spec.merge_method.upper(), expected_head_oid=head)
    except GithubException as exc:
        message = describe(exc)
        if "clean status" in message or "unstable status" in message:
            # GitHub will not arm auto-merge on a PR that could merge now: merge it ourselves.
            return merge_when_green(pull, spec, by, settings)
        reason = redact_text(message, settings.secrets)
        if "not allowed for this repository" in message:
            reason = "the repository does not allow auto-merge (Settings: Allow auto-merge)"
        return MergeAttempt("refused", f"auto-merge not enabled: {reason}", by=by, sha=head)
    reason = f"auto-merge enabled ({spec.merge_method})"
    return MergeAttempt("auto_merge", reason, by=by, sha=head, method=spec.merge_method)


def delete_merged_branch(pull: PullRequest) -> bool:
    """Delete the head branch when the repository says so; True when it is gone."""
    repo = pull.base.repo
    if not repo.delete_branch_on_merge:
        return False
    try:
        repo.get_git_ref(f"heads/{pull.head.ref}").delete()
    except GithubException as exc:
        if exc.status in (404, 422):  # GitHub already deleted it (its own setting does that)
            return True
        raise
    return True


def decide(
    result: RepositoryResult,
    spec: JobSpec,
    gh: Github,
    settings: Settings,
    by: str = "tracking",
    mode: str | None = None,
    pull: PullRequest | None = None,
) -> MergeAttempt:
    """Apply the job's merge setting (or `mode`) to one result's PR (as just read, when
    given); record the decision in result."""
    mode = mode or spec.merge
    what = f"merging {result.repository} #{result.pr_number}"
    given = pull

    def run() -> tuple[MergeAttempt, PullRequest]:
        pull = given or fetch_pull(result, gh)
        if mode == "auto":
            return enable_auto_merge(pull, spec, by, settings), pull
        return merge_when_green(pull, spec, by, settings), pull

    try:
        attempt, pull = github_call(settings, what, run)
    except GitHubError as exc:
        attempt, pull = MergeAttempt("failed", str(exc), by=by), None
    part = result.merge or MergePart()
    part.mode = mode
    part.record(attempt)
    if attempt.outcome == "merged" and pull is not None:
        part.merge_sha = attempt.sha
        result.pr_state = "merged"
        try:
            part.branch_deleted = github_call(
                settings, "deleting the merged branch", lambda: delete_merged_branch(pull)
            )
        except GitHubError as exc:
            part.branch_deleted = False
            part.reason += f"; the branch was not deleted: {exc}"
    result.merge = part
    log.info(
        "%s #%s: %s (%s)", result.repository, result.pr_number, attempt.outcome, attempt.reason
    )
    return attempt


def merge_job(
    job_id: str,
    repository: str | None,
    settings: Settings,
    store: Store,
    by: str = "cli",
) -> list[tuple[RepositoryResult, MergeAttempt]]:
    """Merge the job's open PRs that are green now (when_green's rule, whatever the setting)."""
    job = store.get_job(job_id)
    if job is None:
        raise MergeError(f"job {job_id} does not exist")
    try:
        spec = JobSpec.parse(job.spec, settings, check_local=False)
    except SpecError as exc:
        raise MergeError(f"the spec of job {job_id} is no longer valid: {exc}") from None
    results = store.list_results(job_id)
    if repository:
        results = [r for r in results if r.repository == repository]
        if not results:
            raise MergeError(f"{repository} is not a repository of job {job_id}")
    gh = client(settings)
    done = []
    for result in results:
        if not result.pr_number or result.pr_state != "open":
            continue
        attempt = decide(result, spec, gh, settings, by=by, mode="when_green")
        saved = save_with_retry(store, result, ("merge", "pr_state"))
        done.append((saved, attempt))
    return done
