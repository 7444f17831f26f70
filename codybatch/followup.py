"""Follow-up rounds: hand a PR's failing checks, reviews and conflicts back to Claude.

A round checks out the PR's branch, gives Claude the original task plus what GitHub says
(failing check output and annotations, the Actions job's log tail, review comments with
file and line, `/codybatch fix` requests from people with write access) and pushes what
it changes as a new commit, never over a person's commits. Bounded by max_fix_rounds; a
round's cost counts against the job's limits; a round that changes nothing stops.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from github import Github, GithubException
from github.PullRequest import PullRequest

from codybatch import git
from codybatch.github import (
    GitHubError,
    author_of_token,
    client,
    github_call,
    pr_slot,
    resolve_repository,
)
from codybatch.jobs import refresh_usage
from codybatch.records import FixRound, Job, RepositoryResult, now_iso
from codybatch.redact import contains_secret, redact_text
from codybatch.settings import Settings
from codybatch.shell import truncate
from codybatch.spec import JobSpec
from codybatch.store import Store
from codybatch.tracking import fetch_pull, save_with_retry, stored_spec, tracking_record

log = logging.getLogger("codybatch.followup")

COMMAND = re.compile(r"^\s*/codybatch\s+fix\b\s*(?P<what>.*)$", re.MULTILINE | re.IGNORECASE)
WRITERS = frozenset({"admin", "write", "maintain"})
LOG_TAIL = 6_000  # characters of a failed Actions job's log given to Claude
PATCH_KEPT = 60_000  # characters of a round's patch kept inline in the record
MIN_USD = 0.01  # a round needs at least this much of the job's USD limit left


class FollowUpError(Exception):
    """A follow-up pass that cannot start (unknown job or repository)."""


@dataclass
class Feedback:
    """What a round is asked to address, and the GitHub ids it answers."""

    trigger: str
    detail: str
    context: list[str] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    review_comments: list[int] = field(default_factory=list)  # ids to reply to
    conflict: bool = False


def _seen(result: RepositoryResult) -> set[int]:
    return {i for r in result.fix_rounds for i in r.seen}


def _log_tail(pull: PullRequest, job_id: int, settings: Settings) -> str:
    """The tail of a GitHub Actions job's log (the API answers 302 to a signed URL)."""
    try:
        location = pull.base.repo.get_workflow_job(job_id).logs_url()
        text = requests.get(location, timeout=30).text
    except (GithubException, requests.RequestException, KeyError) as exc:
        return f"(the job's log could not be read: {type(exc).__name__})"
    return redact_text(text[-LOG_TAIL:], settings.secrets)


def failing_checks(pull: PullRequest, settings: Settings) -> list[str]:
    """Failing check runs and statuses of the head, as text for Claude."""
    commit = pull.base.repo.get_commit(pull.head.sha)
    parts = []
    for run in commit.get_check_runs():
        if run.status != "completed" or run.conclusion in ("success", "neutral", "skipped"):
            continue
        lines = [f"### Check `{run.name}`: {run.conclusion}"]
        output = run.output
        for text in (output.title, output.summary, output.text):
            if text:
                lines.append(truncate(str(text), 4000))
        for note in run.get_annotations():
            lines.append(f"- {note.path}:{note.start_line}: {note.message}")
        if run.app is not None and run.app.slug == "github-actions":
            lines.append("Log tail:\n```\n" + _log_tail(pull, run.id, settings) + "\n```")
        parts.append("\n".join(lines))
    combined = commit.get_combined_status()
    for status in combined.statuses if combined.total_count else []:
        if status.state in ("failure", "error"):
            parts.append(
                f"### Status `{status.context}`: {status.state} {status.description or ''}"
            )
    return parts


def gather(
    pull: PullRequest, result: RepositoryResult, bot: str, settings: Settings
) -> Feedback | None:
    """What is due on this PR now (None: nothing), newest person's word first."""
    seen = _seen(result)
    repo = pull.base.repo
    context: list[str] = []
    new_ids: list[int] = []
    triggers: list[tuple[str, str]] = []
    answered = False

    for comment in pull.get_issue_comments():
        match = COMMAND.search(comment.body or "")
        if comment.id in seen or match is None or comment.user.login == bot:
            continue
        if repo.get_collaborator_permission(comment.user.login) not in WRITERS:
            continue  # only people who could push the fix themselves may ask for one
        what = match["what"].strip() or "address the feedback on this pull request"
        triggers.append(("command", f"{comment.user.login}: /codybatch fix {what}"))
        context.append(f"### {comment.user.login} asks\n{what}")
        new_ids.append(comment.id)
    for review in pull.get_reviews():
        if review.id in seen or review.state != "CHANGES_REQUESTED":
            continue
        triggers.append(("changes_requested", f"{review.user.login} requested changes"))
        context.append(f"### Review by {review.user.login}: changes requested\n{review.body or ''}")
        new_ids.append(review.id)
    replies: list[int] = []
    for comment in pull.get_review_comments():
        if comment.id in seen or comment.user.login == bot or comment.in_reply_to_id:
            continue
        where = f"{comment.path}:{comment.line or comment.original_line}"
        triggers.append(("review_comments", f"{comment.user.login} on {where}"))
        context.append(f"### {comment.user.login} on `{where}`\n{comment.body}")
        new_ids.append(comment.id)
        replies.append(comment.id)
    head_judged = any(r.head_before == pull.head.sha for r in result.fix_rounds)
    if not head_judged:
        failing = failing_checks(pull, settings)
        if failing:
            triggers.append(("failing_check", "failing checks at " + pull.head.sha[:7]))
            context.extend(failing)
        if pull.mergeable is False:
            triggers.append(("conflict", "the branch conflicts with its base"))
            answered = True
    if not triggers:
        return None
    order = ["conflict", "command", "changes_requested", "review_comments", "failing_check"]
    triggers.sort(key=lambda t: order.index(t[0]))
    return Feedback(
        trigger=triggers[0][0],
        detail="; ".join(d for _, d in triggers),
        context=context,
        seen=new_ids,
        review_comments=replies,
        conflict=answered,
    )


def followup_prompt(spec: JobSpec, feedback: Feedback) -> str:
    """The original task, then what the pull request's reviewers and checks say."""
    return (
        f"{spec.prompt.strip()}\n\n"
        "You made this change earlier and opened a pull request for it. The checkout is the "
        "pull request's branch as it stands now. Address the feedback below with the smallest "
        "further change; if nothing should change, call finish saying so.\n\n"
        + "\n\n".join(feedback.context)
    )


def followup_candidates(store: Store, settings: Settings) -> list[dict[str, str]]:
    """(job, repository) of every open PR whose job lets Claude follow up (a prompt and
    max_fix_rounds above 0); whether a round is due is decided when it runs."""
    from codybatch.tracking import pull_requests_to_track

    found = []
    for job, results in pull_requests_to_track(store):
        spec = stored_spec(job, settings)
        if spec is None or not spec.prompt.strip() or spec.max_fix_rounds <= 0:
            continue
        found.extend({"job_id": job.job_id, "repository": r.repository} for r in results)
    return found


def run_followups(
    job_id: str,
    repository: str | None,
    settings: Settings,
    store: Store,
    gh: Github | None = None,
    by: str = "cli",
) -> list[tuple[RepositoryResult, FixRound | None]]:
    """One pass over the job's open PRs: refresh each, run the round that is due (if any)."""
    job = store.get_job(job_id)
    if job is None:
        raise FollowUpError(f"job {job_id} does not exist")
    spec = stored_spec(job, settings)
    if spec is None:
        raise FollowUpError(f"the spec of job {job_id} is no longer valid")
    results = [r for r in store.list_results(job_id) if r.pr_number and r.pr_state == "open"]
    if repository:
        results = [r for r in results if r.repository == repository]
    gh = gh or client(settings)
    bot = github_call(settings, "reading the token's user", lambda: gh.get_user().login)
    done = []
    for result in results:
        try:
            done.append((result, follow_up(job, spec, result, gh, bot, settings, store)))
        except GitHubError as exc:
            log.warning("%s: follow-up skipped: %s", result.repository, exc)
            done.append((result, None))
    return done


def follow_up(
    job: Job,
    spec: JobSpec,
    result: RepositoryResult,
    gh: Github,
    bot: str,
    settings: Settings,
    store: Store,
) -> FixRound | None:
    """Refresh one PR and run its due round; None when nothing is due."""
    pull = github_call(settings, f"reading #{result.pr_number}", lambda: fetch_pull(result, gh))
    result.tracking = github_call(settings, "its checks", lambda: tracking_record(pull))
    if pull.state != "open":
        result.pr_state = result.tracking.state
        save_with_retry(store, result, ("pr_state", "tracking"))
        return None
    feedback = github_call(
        settings, "reading feedback", lambda: gather(pull, result, bot, settings)
    )
    if feedback is None:
        save_with_retry(store, result, ("tracking",))
        return None
    rounds = list(result.fix_rounds)
    spent = result.usage.usd
    if len(rounds) >= spec.max_fix_rounds or spec.max_usd - spent < MIN_USD:
        why = (
            f"max_fix_rounds ({spec.max_fix_rounds}) reached"
            if len(rounds) >= spec.max_fix_rounds
            else f"the job's USD limit is spent (${spent:.2f} of ${spec.max_usd:.2f})"
        )
        if result.followup_stopped != why:
            result.followup_stopped = why
            _comment(
                pull, f"Cody Batch stops following up here: {why}. Over to a person.", settings
            )
        save_with_retry(store, result, ("tracking", "followup_stopped"))
        return None
    fix = FixRound(
        number=len(rounds) + 1,
        trigger=feedback.trigger,
        trigger_detail=feedback.detail,
        head_before=pull.head.sha,
        seen=feedback.seen,
    )
    try:
        _run_round(job, spec, result, pull, feedback, fix, settings, store)
    except (git.GitError, GitHubError, GithubException) as exc:
        fix.outcome, fix.note = "failed", redact_text(str(exc), settings.secrets)
    fix.finished_at = now_iso()
    result.usage = result.usage + fix.usage
    result.fix_rounds = [*rounds, fix]
    save_with_retry(store, result, ("tracking", "fix_rounds", "usage"))
    refresh_usage(store, result.job_id)  # the round's cost counts in the job's totals
    log.info("%s round %d (%s): %s %s", result.repository, fix.number, fix.trigger, fix.outcome,
             fix.note)  # fmt: skip
    return fix


def _run_round(
    job: Job,
    spec: JobSpec,
    result: RepositoryResult,
    pull: PullRequest,
    feedback: Feedback,
    fix: FixRound,
    settings: Settings,
    store: Store,
) -> None:
    token = settings.github_token or None
    remote = resolve_repository(spec.repository(result.repository), settings)
    branch, base = pull.head.ref, pull.base.ref
    author = settings.git_author or author_of_token(settings)
    with tempfile.TemporaryDirectory(prefix="codybatch-followup-") as tmp:
        checkout = git.clone_full(remote.clone_url, Path(tmp) / "checkout", branch, token)
        config = git.read_config(checkout)
        head = git.run_git(["rev-parse", "HEAD"], cwd=checkout).decode().strip()
        if head != pull.head.sha:
            fix.outcome, fix.note = "stopped", "the branch moved while this round started"
            return
        emails = git.authors(checkout, f"origin/{base}")
        bot_email = _email(author)
        others = [e for e in emails if e != bot_email]
        if feedback.conflict:
            if git.rebase(checkout, f"origin/{base}", author):
                if others:
                    fix.outcome = "stopped"
                    fix.note = (
                        "the branch needs a rebase but a person committed to it: over to them"
                    )
                    return
                git.restore_config(checkout, config)
                git.push_with_lease(checkout, remote.clone_url, branch, head, token)
                fix.outcome, fix.note = "rebased", f"rebased onto {base}: it applied cleanly"
                fix.head_after = git.run_git(["rev-parse", "HEAD"], cwd=checkout).decode().strip()
                _reply(pull, fix, feedback, settings)
                return
            if others:
                fix.outcome = "stopped"
                fix.note = "conflicts with the base and a person committed to the branch"
                return
            git.run_git(["reset", "--quiet", "--hard", f"origin/{base}"], cwd=checkout)
            feedback.context.append(
                f"The base branch {base} moved and the earlier change no longer applies: "
                "make the change again on the current code."
            )
        _agent(spec, feedback, checkout, result, fix, settings, store)
        git.restore_config(checkout, config)
        patch = git.diff(checkout)
        if contains_secret(patch, settings.secrets):
            fix.outcome, fix.note = "failed", "the change contains a secret: not pushed"
            return
        if not patch:
            fix.outcome, fix.note = "no_change", "Claude changed nothing: no further rounds"
            _reply(pull, fix, feedback, settings)
            return
        fix.changed_files = git.changed_files(checkout)[:200]
        fix.patch = truncate(patch.decode("utf-8", "replace"), PATCH_KEPT)
        store.put_patch(result.job_id, f"{result.repository}#round-{fix.number}", patch)
        message = f"Follow-up: {truncate(fix.trigger_detail, 200)}\n\n{fix.summary}".strip()
        git.commit_all(checkout, redact_text(message, settings.secrets), author)
        if feedback.conflict:
            git.push_with_lease(checkout, remote.clone_url, branch, head, token)
            fix.outcome, fix.note = "pushed", f"re-made the change on the new {base}"
        else:
            _push_on_top(checkout, remote.clone_url, branch, author, token, fix)
        if fix.outcome == "pushed":
            fix.head_after = git.run_git(["rev-parse", "HEAD"], cwd=checkout).decode().strip()
        _reply(pull, fix, feedback, settings)


def _agent(
    spec: JobSpec,
    feedback: Feedback,
    checkout: Path,
    result: RepositoryResult,
    fix: FixRound,
    settings: Settings,
    store: Store,
) -> None:
    from codybatch.agent import run_agent

    key = f"{result.repository}#round-{fix.number}"
    budget = spec.model_copy(
        update={
            "prompt": followup_prompt(spec, feedback),
            "max_usd": max(MIN_USD, spec.max_usd - result.usage.usd),
            "max_tokens": max(1_000, spec.max_tokens - result.usage.total_tokens),
        }
    )

    def on_thread(thread: dict[str, Any]) -> None:
        store.put_thread(result.job_id, key, thread)
        fix.thread_key = key

    outcome = run_agent(checkout, budget, settings, on_thread)
    fix.usage = outcome.usage
    fix.summary = outcome.summary or ""
    if outcome.stop_reason == "error":
        raise GitHubError(f"Claude could not finish: {outcome.error}")


def _push_on_top(
    checkout: Path, url: str, branch: str, author: str, token: str | None, fix: FixRound
) -> None:
    """Push without force; if someone pushed meanwhile, rebase our commit on theirs once."""
    try:
        git.push(checkout, url, branch, token=token, force=False)
        fix.outcome, fix.note = "pushed", "a new commit on the branch"
        return
    except git.GitError:
        pass
    git.run_git(["fetch", "--quiet", "--no-tags", git._url(url), branch], cwd=checkout, token=token)
    if not git.rebase(checkout, "FETCH_HEAD", author):
        fix.outcome = "stopped"
        fix.note = "the branch moved (someone pushed) and the fix does not apply on top: not pushed"
        return
    git.push(checkout, url, branch, token=token, force=False)
    fix.outcome, fix.note = "pushed", "the branch had moved: the fix was rebased on top of it"


def _email(author: str) -> str:
    match = re.search(r"<([^>]+)>", author)
    return match.group(1) if match else author


def _comment(pull: PullRequest, body: str, settings: Settings) -> str | None:
    def post() -> str:
        with pr_slot(settings):
            return pull.create_issue_comment(redact_text(body, settings.secrets)).html_url

    return github_call(settings, f"commenting on #{pull.number}", post)


def _reply(pull: PullRequest, fix: FixRound, feedback: Feedback, settings: Settings) -> None:
    """Say on the PR what the round did; answer each review comment it addressed."""
    what = {
        "pushed": f"pushed {(fix.head_after or '')[:7]}",
        "rebased": f"rebased the branch ({(fix.head_after or '')[:7]})",
        "no_change": "looked and changed nothing",
        "stopped": "stopped",
    }.get(fix.outcome, fix.outcome)
    body = (
        f"**Cody Batch follow-up {fix.number}** ({feedback.detail}): {what}.\n\n"
        f"{fix.summary or fix.note}"
    )
    if fix.changed_files:
        body += "\n\nFiles: " + ", ".join(f"`{f}`" for f in fix.changed_files[:20])
    fix.reply_url = _comment(pull, body, settings)
    for comment_id in feedback.review_comments:
        note = f"Follow-up {fix.number}: {what}. {truncate(fix.summary or fix.note, 500)}"

        def answer(cid: int = comment_id, text: str = note) -> None:
            with pr_slot(settings):
                pull.create_review_comment_reply(cid, redact_text(text, settings.secrets))

        github_call(settings, "answering a review comment", answer)
