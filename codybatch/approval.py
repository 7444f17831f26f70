"""Approve before publishing: what a person is asked, and what their answer does.

A job with review_before_publish runs patch-only; the DAG's approval task (Airflow's
HITL) asks which changed repositories to publish. Approved ones are published from
their stored patches (no second Claude run); the others stay patch-only, with who
decided and when. No answer before the timeout publishes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from codybatch import git
from codybatch.links import job_url
from codybatch.publish import PublishError, publish_stored
from codybatch.records import ApprovalPart, Job, RepositoryResult, RepositoryStatus, now_iso
from codybatch.settings import Settings
from codybatch.shell import truncate
from codybatch.store import Store
from codybatch.tracking import save_with_retry

log = logging.getLogger("codybatch.approval")

PUBLISH_NONE = "Publish none"  # the option (and the timeout default) that publishes nothing


@dataclass(frozen=True)
class Diffstat:
    files: int
    added: int
    removed: int

    def __str__(self) -> str:
        return f"{self.files} files, +{self.added} -{self.removed}"


def diffstat(patch: bytes) -> Diffstat:
    """Files, added and removed lines of a patch (binary files count as files only)."""
    out = git.run_git(["apply", "--numstat", "-"], input=patch).decode() if patch else ""
    added = removed = files = 0
    for line in out.splitlines():
        plus, minus, _ = line.split("\t", 2)
        files += 1
        added += int(plus) if plus.isdigit() else 0
        removed += int(minus) if minus.isdigit() else 0
    return Diffstat(files, added, removed)


def reviewable(store: Store, job_id: str) -> list[RepositoryResult]:
    """Repositories of the job that changed and wait for a decision about publishing."""
    found = []
    for result in store.list_results(job_id):
        part = result.approval
        if result.status != RepositoryStatus.COMPLETED or not result.has_patch:
            continue
        if result.repository.startswith("/") or result.pr_number:
            continue  # local repositories have no PR; one already open was published
        if part is None or part.state == "pending":
            found.append(result)
    return found


def request(job: Job, results: list[RepositoryResult], settings: Settings, store: Store) -> str:
    """The markdown body of the approval request: per repository diffstat, summary, diff link."""
    lines = [
        f"Cody Batch job **{job.name}** ({job.job_id}) changed {len(results)} repositories. "
        f"Choose the ones to publish as pull requests; **{PUBLISH_NONE}** (also what a timeout "
        "chooses) publishes nothing.",
        "",
    ]
    for result in results:
        stat = diffstat(store.get_patch(job.job_id, result.repository) or b"")
        url = job_url(settings.public_url, job.job_id, "diff", result.repository)
        link = f"[diff]({url})" if url else f"`codybatch diff {job.job_id} {result.repository}`"
        summary = truncate((result.summary or "").strip().replace("\n", " "), 400)
        lines.append(
            f"- **{result.repository}**: {stat}, {link}" + (f"\n  {summary}" if summary else "")
        )
        result.approval = ApprovalPart()
        save_with_retry(store, result, ("approval",))
    return "\n".join(lines)


def decide(
    job_id: str,
    chosen: list[str],
    by: str | None,
    settings: Settings,
    store: Store,
    at: str | None = None,
) -> list[RepositoryResult]:
    """Publish the chosen repositories from their stored patches; record every decision.

    `by` None means nobody answered (the timeout's default applied)."""
    at = at or now_iso()
    decided = []
    for result in reviewable(store, job_id):
        approved = result.repository in chosen and PUBLISH_NONE not in chosen
        if approved:
            try:
                [result] = publish_stored(job_id, result.repository, settings, store)
                state = "approved"
                note = result.publishing.reason if result.publishing else ""
            except PublishError as exc:
                state, note = "approved", f"approved, but publishing failed: {exc}"
        elif by is None:
            state, note = "timed_out", "no answer before the timeout: nothing published"
        else:
            state, note = "rejected", "not chosen for publishing: stays patch-only"
        result.approval = ApprovalPart(state, by, at, note)
        decided.append(save_with_retry(store, result, ("approval",)))
        log.info("%s: %s by %s (%s)", result.repository, state, by or "timeout", note)
    return decided
