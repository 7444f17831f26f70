"""Machine-readable views of results: CSV exports and a campaign's burndown."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from codybatch.fleet_records import FleetEntry
from codybatch.records import Job, RepositoryResult, RepositoryStatus, Tracking
from codybatch.store import Store

# A job and its results, as read once from the store.
JobResults = tuple[Job, Sequence[RepositoryResult]]

RESULT_COLUMNS = [
    "job_id",
    "job_name",
    "repository",
    "status",
    "were_changes_necessary",
    "summary",
    "pr_url",
    "pr_number",
    "pr_state",
    "checks",
    "review",
    "stop_reason",
    "error",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "usd",
    "started_at",
    "finished_at",
]
JOB_COLUMNS = [
    "job_id",
    "name",
    "status",
    "campaign",
    "repositories",
    "changed",
    "failed",
    "total_tokens",
    "usd",
    "created_at",
    "updated_at",
]


FLEET_COLUMNS = [
    "repository",
    "member",
    "status",
    "error_class",
    "error",
    "pr_url",
    "pr_state",
    "checks",
    "rounds",
    "merge_state",
    "merge_reason",
    "usd",
    "jobs",
    "job_id",
    "done_reason",
    "left_reason",
    "launched_at",
    "updated_at",
]


def fleet_row(entry: FleetEntry) -> dict[str, Any]:
    return {
        "repository": entry.repository,
        "member": entry.member,
        "status": entry.status.value,
        "error_class": entry.error_class.value if entry.error_class else None,
        "error": entry.error,
        "pr_url": entry.pr_url,
        "pr_state": entry.pr_state,
        "checks": entry.checks,
        "rounds": entry.rounds,
        "merge_state": entry.merge_state,
        "merge_reason": entry.merge_reason,
        "usd": entry.total_usd,
        "jobs": entry.jobs,
        "job_id": entry.job_id,
        "done_reason": entry.done_reason,
        "left_reason": entry.left_reason,
        "launched_at": entry.launched_at.isoformat() if entry.launched_at else None,
        "updated_at": entry.updated_at.isoformat(),
    }


def fleet_csv(entries: Iterable[FleetEntry]) -> str:
    """One row per repository of a campaign's fleet."""
    return _csv(FLEET_COLUMNS, [fleet_row(e) for e in entries])


def result_counts(results: Sequence[RepositoryResult]) -> dict[str, int]:
    """How many repositories changed, failed, are finished, of all; PRs by state."""
    return {
        "total": len(results),
        "finished": sum(r.finished for r in results),
        "changed": sum(bool(r.were_changes_necessary) for r in results),
        "failed": sum(r.status == RepositoryStatus.FAILED for r in results),
        "pull_requests": sum(bool(r.pr_url) for r in results),
        "prs_open": sum(r.pr_state == "open" for r in results),
        "prs_merged": sum(r.pr_state == "merged" for r in results),
        "prs_closed": sum(r.pr_state == "closed" for r in results),
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    # Text from repositories and Claude must not run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def result_row(job: Job, r: RepositoryResult) -> dict[str, Any]:
    tracking = r.tracking or Tracking()
    return {
        "job_id": job.job_id,
        "job_name": job.name,
        "repository": r.repository,
        "status": r.status.value,
        "were_changes_necessary": r.were_changes_necessary,
        "summary": r.summary,
        "pr_url": r.pr_url,
        "pr_number": r.pr_number,
        "pr_state": r.pr_state,
        "checks": tracking.checks,
        "review": tracking.review,
        "stop_reason": r.stop_reason,
        "error": r.error,
        **r.usage.to_dict(),
        "started_at": r.started_at.isoformat() if r.started_at else None,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
    }


def results_csv(job: Job, results: Sequence[RepositoryResult]) -> str:
    """One row per repository of a job."""
    return _csv(RESULT_COLUMNS, [result_row(job, r) for r in results])


def job_row(job: Job, results: Sequence[RepositoryResult]) -> dict[str, Any]:
    counts = result_counts(results)
    return {
        "job_id": job.job_id,
        "name": job.name,
        "status": job.status.value,
        "campaign": job.spec.get("campaign"),
        "repositories": len(job.repositories),
        "changed": counts["changed"],
        "failed": counts["failed"],
        "total_tokens": job.usage.total_tokens,
        "usd": job.usage.usd,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def jobs_csv_of(rows: Iterable[JobResults]) -> str:
    """One row per job with its counts, from jobs and the results already read for them."""
    return _csv(JOB_COLUMNS, [job_row(job, results) for job, results in rows])


def jobs_csv(store: Store, jobs: Iterable[Job]) -> str:
    """jobs_csv_of, reading each job's results from the store (the CLI's export)."""
    return jobs_csv_of((j, store.list_results(j.job_id)) for j in jobs)


def campaign_jobs(store: Store, campaign: str, limit: int = 1000) -> list[Job]:
    """The newest `limit` runs of a campaign (the store's campaign index), oldest first."""
    return store.campaign_jobs(campaign, limit=limit)[::-1]


def burndown(runs: Iterable[JobResults]) -> list[dict[str, Any]]:
    """Per campaign run, in the order given: repositories still needing change, PRs open,
    PRs merged."""
    points = []
    for job, results in runs:
        counts = result_counts(results)
        points.append(
            {
                "job_id": job.job_id,
                "at": job.created_at.isoformat(),
                "status": job.status.value,
                "repositories": counts["total"],
                "needing_change": sum(
                    1
                    for r in results
                    if r.were_changes_necessary and r.pr_state not in ("merged", "closed")
                ),
                "prs_open": counts["prs_open"],
                "prs_merged": counts["prs_merged"],
                "done": sum(
                    1
                    for r in results
                    if r.status == RepositoryStatus.SKIPPED or r.were_changes_necessary is False
                ),
            }
        )
    return points
