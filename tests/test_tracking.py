"""Which pull requests the tracking sweep reads: the store's PR-state index, not every job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from codybatch.records import Job, RepositoryResult
from codybatch.store.local import LocalStore
from codybatch.tracking import pull_requests_to_track

T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
REPOS = ["github.com/acme/zeta", "github.com/acme/alpha", "github.com/acme/mid"]


def set_pull_request(number: int | None, state: str) -> Callable[[RepositoryResult], None]:
    def change(result: RepositoryResult) -> None:
        result.pr_number, result.pr_state = number, state

    return change


def test_only_jobs_with_open_pull_requests_are_read(tmp_path: Path) -> None:
    statements: list[str] = []
    store = LocalStore(tmp_path / "home", trace=statements.append)
    for i in range(40):
        created = T0 + timedelta(minutes=i)
        store.create_job(Job(f"job-{i:02}", {"repositories": REPOS}, created_at=created))
    for job_id, repository, number, state in (
        ("job-03", REPOS[1], 11, "open"),
        ("job-31", REPOS[2], 12, "open"),
        ("job-31", REPOS[0], 13, "open"),
        ("job-20", REPOS[0], 14, "merged"),
        ("job-25", REPOS[0], None, "open"),  # no number: nothing to read on GitHub
    ):
        store.update_result(job_id, repository, set_pull_request(number, state))
    statements.clear()

    found = pull_requests_to_track(store)

    assert [(job.job_id, [r.repository for r in results]) for job, results in found] == [
        ("job-31", [REPOS[0], REPOS[2]]),  # newest job first, its repositories in job order
        ("job-03", [REPOS[1]]),
    ]
    reads = [s for s in statements if s.startswith("SELECT")]
    assert all("FROM jobs WHERE job_id=" in s or "pr_state=" in s for s in reads), reads
    assert len(reads) == 1 + 2  # one index query, one key lookup per job with a live PR
