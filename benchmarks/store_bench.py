"""The store's list queries at 1,000 and 10,000 jobs: flat in history, since indexes answer.

Local store (SQLite) only: the AWS store's queries are checked to be index Queries in
tests/store/test_aws.py; their latency is DynamoDB's, not ours.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import BENCH_DIR, Figure, at_most, note, report

REPOSITORIES = ["github.com/seed/a", "github.com/seed/b", "github.com/seed/c"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIVE_PRS = 20


def seed(folder: Path, jobs: int) -> object:
    """A local store of `jobs` jobs (one in ten of a campaign; 20 open pull requests, however
    many jobs), written in one transaction (as many workers would have, but quicker)."""
    import json

    from codybatch.records import Job, JobStatus
    from codybatch.store.base import campaign_of
    from codybatch.store.local import JOB_COLUMNS, RESULT_COLUMNS, LocalStore

    shutil.rmtree(folder, ignore_errors=True)
    store = LocalStore(folder)
    db = sqlite3.connect(store.path)
    statuses = list(JobStatus)
    with db:
        for i in range(jobs):
            spec = {"name": f"job {i}", "repositories": REPOSITORIES}
            if i % 10 == 0:
                spec["campaign"] = f"campaign-{i // 10 % 3}"
            created = T0 + timedelta(seconds=i)
            job = Job(f"job-{i:06d}", spec, statuses[i % len(statuses)], created, created)
            row = (job.job_id, job.status.value, created.timestamp(), job.expires_at.timestamp())
            db.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (*row, json.dumps(job.to_dict()), campaign_of(job), "codybatch_job"),
            )
            for position, result in enumerate(job.pending_results()):
                live = i % (jobs // LIVE_PRS) == 0 and position == 0
                result.pr_state = "open" if live else None
                result.pr_number = 1 if result.pr_state else None
                db.execute(
                    f"INSERT INTO results ({RESULT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    (job.job_id, result.repository, position, "PENDING", 0, row[3],
                     json.dumps(result.to_dict()), result.pr_state),
                )  # fmt: skip
    db.close()
    return store


def queries(store: object) -> dict[str, Callable[[], object]]:
    """The list pages' store calls."""
    from codybatch.records import JobStatus
    from codybatch.store import JobCursor
    from codybatch.tracking import pull_requests_to_track

    middle = store.list_jobs(limit=1, offset=len(store.list_jobs(limit=500)) - 1)[0]
    cursor = JobCursor.of(middle)
    return {
        "jobs page (25 newest)": lambda: store.list_jobs(limit=26),
        "jobs page by status": lambda: store.list_jobs(JobStatus.RUNNING, limit=26),
        "jobs page after a cursor": lambda: store.list_jobs(limit=26, before=cursor),
        "a campaign's jobs": lambda: store.campaign_jobs("campaign-0", limit=50),
        "campaigns and their counts": store.campaigns,
        "pull requests to track": lambda: pull_requests_to_track(store),
    }


def p95_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: the first read pays for opening the database file
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[min(len(times) - 1, int(len(times) * 0.95))]


def run(
    bench_dir: Path = BENCH_DIR, small: int = 1_000, large: int = 10_000, runs: int = 30
) -> list[Figure]:
    figures: list[Figure] = []
    work = bench_dir / "store"
    print(f"== store queries: {small:,} vs {large:,} jobs (local store) ==", flush=True)
    timings = {}
    for size in (small, large):
        store = seed(work / str(size), size)
        timings[size] = {name: p95_ms(fn, runs) for name, fn in queries(store).items()}
    for name, at_large in timings[large].items():
        at_small = timings[small][name]
        ratio = at_large / max(at_small, 0.05)
        # Flat in history: the large store answers within 2x of the small one (index reads);
        # a scan would take about large/small = 10x.
        report(at_most(f"{name}: p95 growth", ratio, 2.0, detail="10x the jobs"), figures)
        note(f"p95 {at_small:.2f} ms at {small:,} jobs, {at_large:.2f} ms at {large:,}")
    shutil.rmtree(work, ignore_errors=True)
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args(argv or [])
    return run(large=args.large)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
