"""The tracking sweep: refresh every open PR Cody Batch opened, then apply its job's merge
setting (tracking reads a PR, merge decides on it; this uses both)."""

from __future__ import annotations

import logging

from codybatch.fleet import record_job
from codybatch.github import GitHubError, client, github_call
from codybatch.merge import decide
from codybatch.settings import Settings
from codybatch.store import Store
from codybatch.tracking import (
    Tracked,
    pull_requests_to_track,
    read_pull,
    save_with_retry,
    stored_spec,
)

log = logging.getLogger("codybatch.tracking")


def track_pull_requests(store: Store, settings: Settings) -> list[Tracked]:
    """Refresh every open PR Cody Batch opened and store it, then apply the job's merge
    setting; one failure never stops the rest."""
    tracked = []
    gh = client(settings)  # one client (and HTTP session) for the whole sweep
    for job, results in pull_requests_to_track(store):
        spec = stored_spec(job, settings)
        for result in results:
            item = Tracked(
                result.job_id, result.repository, int(result.pr_number or 0), result.pr_state, None
            )
            tracked.append(item)
            try:
                pull, record = github_call(
                    settings,
                    f"reading pull request #{result.pr_number}",
                    lambda r=result: read_pull(r, gh),
                )
            except GitHubError as exc:
                item.error = str(exc)
                log.warning("%s #%s: %s", result.repository, result.pr_number, exc)
                continue
            item.after, item.checks, item.review = record.state, record.checks, record.review
            result.pr_state = record.state
            result.tracking = record
            if spec is not None and spec.merge != "off" and record.state == "open":
                attempt = decide(result, spec, gh, settings, pull=pull)
                item.merge = f"{attempt.outcome}: {attempt.reason}"
                if attempt.outcome == "merged":
                    item.after = record.state = "merged"
            save_with_retry(store, result, ("pr_state", "tracking", "merge"))
        record_job(store, job, results)  # the campaign's fleet view shows it before its next run
    return tracked
