"""Push a job's change to its branch and open, update or close the pull request.

One branch per job name (codybatch/<slug>), so a re-run finds its pull request again:
an open one is updated, never duplicated; one merged or closed by a person is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import requests
from github import GithubException
from github.PullRequest import PullRequest

from codybatch import git
from codybatch.github import (
    GitHubError,
    RemoteRepository,
    author_of_token,
    branch_name,
    client,
    describe,
    find_pull,
    github_call,
    pr_slot,
    resolve_repository,
)
from codybatch.links import job_url
from codybatch.records import Job, Phase, Publishing, RepositoryResult, RepositoryStatus
from codybatch.redact import redact_text
from codybatch.settings import Settings
from codybatch.shell import truncate
from codybatch.spec import JobSpec, SpecError
from codybatch.store import StaleWriteError, Store

log = logging.getLogger("codybatch.publish")

# Added to the body of a PR we close, so a later run can tell our close from a person's.
CLOSED_MARKER = "<!-- codybatch: closed because no changes were necessary -->"
MAX_TITLE = 250
MAX_BODY = 60_000


class PublishError(Exception):
    """Publishing failed (e.g. the push was rejected); the message is readable and token-free."""


def publish_changes(
    checkout: Path,
    remote: RemoteRepository,
    job: Job,
    spec: JobSpec,
    result: RepositoryResult,
    settings: Settings,
) -> None:
    """Push the checkout's change and open/update/close the PR; record what was done in result."""
    try:
        _publish_changes(checkout, remote, job, spec, result, settings)
    except GitHubError as exc:
        raise PublishError(str(exc)) from None


def _publish_changes(
    checkout: Path,
    remote: RemoteRepository,
    job: Job,
    spec: JobSpec,
    result: RepositoryResult,
    settings: Settings,
) -> None:
    branch = branch_name(spec.name)
    if result.were_changes_necessary is None:
        raise PublishError("nothing to publish: the change of this repository was not recorded")
    if not remote.can_push:
        _record(result, branch, "patch_only", "no push access: patch only")
        return
    repo, existing = _existing_pull(remote, branch, settings)
    owner = remote.full_name.split("/")[0]
    by_person = existing is not None and existing.state != "open" and not _closed_by_us(existing)

    if not result.were_changes_necessary:
        if existing is not None and existing.state == "open":
            _close(existing, job, spec, settings)
            _record(
                result, branch, "closed", "no changes necessary: closed the pull request", existing
            )
        elif by_person:
            _leave_alone(result, branch, existing, "no changes necessary")
        else:
            reason = "no pull request" if existing is None else f"#{existing.number} stays closed"
            _record(result, branch, "none", f"no changes necessary: {reason}", existing)
        return
    if by_person:
        _leave_alone(result, branch, existing, "nothing pushed")
        return
    if existing is not None and existing.state != "open":
        existing = None  # we closed it on an earlier run: a new change gets a new PR

    pushed = _push(checkout, remote, branch, job, spec, result, settings)
    title = (result.pr_title or spec.name).strip()[:MAX_TITLE]
    body = pull_request_body(job, spec, result, settings)
    if existing is None:
        pull, created = _open(
            repo, owner, branch, git.current_branch(checkout), title, body, spec, settings
        )
        if created:
            _record(result, branch, "opened", f"opened a pull request from {branch}", pull)
            return
        existing = pull
    edited = _update(existing, title, body, settings)
    if pushed:
        _record(result, branch, "updated", f"pushed the new change to {branch}", existing)
    else:
        reason = f"{branch} already holds this change: nothing pushed"
        if edited:
            reason += "; title and body updated"
        _record(result, branch, "unchanged", reason, existing)


def pull_request_body(job: Job, spec: JobSpec, result: RepositoryResult, settings: Settings) -> str:
    """Description, prompt (or steps), summary and where to see the job's results."""
    parts = []
    if spec.description.strip():
        parts.append(spec.description.strip())
    if spec.prompt.strip():
        quoted = "\n".join("> " + line for line in truncate(spec.prompt.strip(), 8000).splitlines())
        parts.append("### Prompt\n\n" + quoted)
    if spec.steps:
        parts.append("### Steps\n\n```sh\n" + "\n".join(spec.steps) + "\n```")
    if (result.summary or "").strip():
        parts.append("### Summary\n\n" + truncate(result.summary.strip(), 8000))
    url = job_url(settings.public_url, job.job_id)
    if url:
        parts.append(f"### Results\n\nThe patch, Claude's thread and the usage of this job: {url}")
    else:
        parts.append(f"### Results\n\n`codybatch show {job.job_id}`")
    parts.append(
        f'<sub>Opened by Cody Batch for the job "{spec.name}" ({job.job_id}). '
        "Re-running the job updates this pull request instead of opening another.</sub>"
    )
    return redact_text(truncate("\n\n".join(parts), MAX_BODY), settings.secrets)


def publish_stored(
    job_id: str, repository: str | None, settings: Settings, store: Store
) -> list[RepositoryResult]:
    """Open (or update) PRs from the stored patches of a job, without running anything again.

    Per-repository failures are recorded as publishing.action == "failed";
    a job or repository that does not exist raises PublishError.
    """
    job = store.get_job(job_id)
    if job is None:
        raise PublishError(f"job {job_id} does not exist")
    try:
        spec = JobSpec.parse(job.spec, settings)
    except SpecError as exc:
        raise PublishError(f"the spec of job {job_id} is no longer valid: {exc}") from None
    keys = list(spec.repositories)
    if repository:
        try:
            keys = [spec.repository(repository).key]
        except (KeyError, ValueError):
            raise PublishError(f"{repository} is not a repository of job {job_id}") from None
    results = []
    for key in keys:
        result = store.get_result(job_id, key)
        if result is None:
            raise PublishError(f"job {job_id} has no result for {key}")
        try:
            _publish_stored_one(job, spec, key, result, settings, store)
        except (PublishError, GitHubError, git.GitError) as exc:
            reason = redact_text(str(exc), settings.secrets)
            log.warning("%s: not published: %s", key, reason)
            result.publishing = Publishing(action="failed", reason=reason)
        results.append(_save(store, result))
    return results


def _publish_stored_one(
    job: Job, spec: JobSpec, key: str, result: RepositoryResult, settings: Settings, store: Store
) -> None:
    repo = spec.repository(key)
    if repo.is_local:
        raise PublishError(f"{key} is a local repository: pull requests need GitHub")
    publish_failed = (
        result.status == RepositoryStatus.FAILED and result.failed_phase == Phase.PUBLISHING
    )
    if result.status != RepositoryStatus.COMPLETED and not publish_failed:
        raise PublishError(f"{key} is {result.status.value}: only a completed run can be published")
    patch = store.get_patch(job.job_id, key)
    if patch is None:
        raise PublishError(f"{key} has no stored patch")
    result.were_changes_necessary = bool(patch)
    remote = resolve_repository(repo, settings)
    if remote.archived:
        raise PublishError(f"{remote.full_name} is archived: nothing can be published")
    base = result.base_branch or spec.base_branch or remote.default_branch
    with tempfile.TemporaryDirectory(prefix="codybatch-publish-") as tmp:
        checkout = Path(tmp) / "checkout"
        git.clone(remote.clone_url, checkout, branch=base, token=settings.github_token or None)
        try:
            git.apply_patch(checkout, patch)
        except git.GitError as exc:
            raise PublishError(f"the stored patch no longer applies to {base}: {exc}") from None
        publish_changes(checkout, remote, job, spec, result, settings)
    if publish_failed:
        # The change itself was made; only publishing had failed, and now it worked.
        result.status, result.error, result.failed_phase = RepositoryStatus.COMPLETED, None, None


def _save(store: Store, result: RepositoryResult) -> RepositoryResult:
    """Save what publishing did; over a newer record (a worker wrote meanwhile), add only that."""
    with contextlib.suppress(StaleWriteError):
        return store.save_result(result)

    def add_publishing(stored: RepositoryResult) -> None:
        for name in ("pr_url", "pr_number", "pr_state", "publishing"):
            setattr(stored, name, getattr(result, name))

    return store.update_result(result.job_id, result.repository, add_publishing)


def _record(
    result: RepositoryResult,
    branch: str,
    action: str,
    reason: str,
    pull: PullRequest | None = None,
) -> None:
    info = Publishing(action=action, reason=reason, branch=branch)
    if pull is not None:
        result.pr_url = pull.html_url
        result.pr_number = pull.number
        result.pr_state = pull_state(pull)
        info.number, info.url, info.state = pull.number, pull.html_url, result.pr_state
    result.publishing = info
    log.info("%s: pull request %s (%s)", result.repository, action, reason)


def _existing_pull(
    remote: RemoteRepository, branch: str, settings: Settings
) -> tuple[Any, PullRequest | None]:
    repo = client(settings).get_repo(remote.full_name, lazy=True)
    owner = remote.full_name.split("/")[0]
    existing = github_call(
        settings,
        f"finding the pull request of {branch} in {remote.full_name}",
        lambda: find_pull(repo, owner, branch),
    )
    return repo, existing


def done_by_a_person(
    remote: RemoteRepository, spec: JobSpec, result: RepositoryResult, settings: Settings
) -> bool:
    """True (and recorded in result) when a person merged or closed the job's PR: a campaign
    counts the repository as done and does not touch it again."""
    branch = branch_name(spec.name)
    _, existing = _existing_pull(remote, branch, settings)
    if existing is None or existing.state == "open" or _closed_by_us(existing):
        return False
    _leave_alone(result, branch, existing, "the campaign is done for this repository")
    return True


def _leave_alone(result: RepositoryResult, branch: str, pull: PullRequest, why: str) -> None:
    state = pull_state(pull)
    reason = f"pull request #{pull.number} was {state} by a person: not reopened; {why}"
    _record(result, branch, f"left_alone_{state}", reason, pull)


def pull_state(pull: PullRequest) -> str:
    """open, closed or merged (merged_at, not `merged`, which costs a request on list results)."""
    if pull.merged_at is not None:
        return "merged"
    return pull.state


def _closed_by_us(pull: PullRequest) -> bool:
    return pull.merged_at is None and CLOSED_MARKER in (pull.body or "")


def _push(
    checkout: Path,
    remote: RemoteRepository,
    branch: str,
    job: Job,
    spec: JobSpec,
    result: RepositoryResult,
    settings: Settings,
) -> bool:
    """Commit and force-push the change to branch; False when the branch already holds it."""
    token = settings.github_token or None
    try:
        if git.remote_branch_sha(remote.clone_url, branch, token) and _same_change(
            checkout, remote.clone_url, branch, token
        ):
            return False
        author = settings.git_author or author_of_token(settings)
        title = (result.pr_title or spec.name).strip()
        summary = (result.summary or "").strip()
        message = f"{title}\n\n{summary}" if summary and summary != title else title
        git.commit_all(checkout, redact_text(message, settings.secrets), author)
    except git.GitError as exc:
        reason = redact_text(str(exc), settings.secrets)
        raise PublishError(f"preparing the push of {branch} failed: {reason}") from None
    try:
        git.push(checkout, remote.clone_url, branch, token=token, force=True)
    except git.GitError as exc:
        reason = redact_text(str(exc), settings.secrets)
        raise PublishError(
            f"push of {branch} to {remote.full_name} was rejected: {reason}"
        ) from None
    log.info("%s: pushed %s", remote.full_name, branch)
    return True


def _same_change(checkout: Path, url: str, branch: str, token: str | None) -> bool:
    """True when the remote branch is one commit on our base with exactly our tree."""
    git.run_git(["add", "--all"], cwd=checkout)
    tree = git.run_git(["write-tree"], cwd=checkout).decode().strip()
    base = git.run_git(["rev-parse", "HEAD"], cwd=checkout).decode().strip()
    fetch = ["fetch", "--quiet", "--no-tags", "--depth", "1", url, f"refs/heads/{branch}"]
    git.run_git(fetch, cwd=checkout, token=token)
    raw = git.run_git(["cat-file", "commit", "FETCH_HEAD"], cwd=checkout).decode()
    header = raw.split("\n\n", 1)[0].splitlines()
    parents = [line.split()[1] for line in header if line.startswith("parent ")]
    return git.tree_sha(checkout, "FETCH_HEAD") == tree and parents == [base]


def _open(
    repo: Any,
    owner: str,
    branch: str,
    base: str,
    title: str,
    body: str,
    spec: JobSpec,
    settings: Settings,
) -> tuple[PullRequest, bool]:
    """Create the PR; when GitHub says one already exists (a retried create), return that one."""
    try:
        with pr_slot(settings):
            pull = repo.create_pull(
                title=title, body=body, head=branch, base=base, draft=spec.draft
            )
        return pull, True
    except GithubException as exc:
        if exc.status == 422 and "already exists" in describe(exc):
            found = github_call(
                settings, "finding the pull request", lambda: find_pull(repo, owner, branch)
            )
            if found is not None and found.state == "open":
                return found, False
        reason = redact_text(describe(exc), settings.secrets)
        raise GitHubError(f"opening a pull request from {branch} into {base}: {reason}") from None
    except requests.RequestException as exc:
        reason = f"cannot reach GitHub ({type(exc).__name__})"
        raise GitHubError(f"opening a pull request from {branch}: {reason}") from None


def _update(pull: PullRequest, title: str, body: str, settings: Settings) -> bool:
    """Set the PR's title and body when they differ; True when something changed."""
    if pull.title == title and (pull.body or "") == body:
        return False

    def edit() -> None:
        with pr_slot(settings):
            pull.edit(title=title, body=body)

    github_call(settings, f"updating pull request #{pull.number}", edit)
    return True


def _close(pull: PullRequest, job: Job, spec: JobSpec, settings: Settings) -> None:
    url = job_url(settings.public_url, job.job_id)
    where = f" Results: {url}" if url else ""
    comment = (
        f'Closing: a new run of the Cody Batch job "{spec.name}" ({job.job_id}) found no '
        "changes necessary in this repository, so this pull request is no longer needed." + where
    )

    def close() -> None:
        with pr_slot(settings):
            pull.create_issue_comment(redact_text(comment, settings.secrets))
        with pr_slot(settings):
            pull.edit(state="closed", body=(pull.body or "") + "\n\n" + CLOSED_MARKER)

    github_call(settings, f"closing pull request #{pull.number}", close)
