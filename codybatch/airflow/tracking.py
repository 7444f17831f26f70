"""The PR tracking DAG: refreshes the pull requests Cody Batch opened, on a schedule."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, task

from codybatch.settings import Settings

log = logging.getLogger(__name__)

TRACKING_DAG_ID = "codybatch_pr_tracking"


@task
def refresh_pull_requests() -> dict[str, int]:
    """State (open/merged/closed), checks and review of every open PR, into the store."""
    from codybatch.store import open_store
    from codybatch.tracking import track_pull_requests

    settings = Settings.from_env()
    if not settings.github_token:
        log.info("GITHUB_TOKEN is not set: no pull requests to track")
        return {"tracked": 0, "changed": 0, "errors": 0}
    tracked = track_pull_requests(open_store(settings), settings)
    for t in tracked:
        log.info(
            "%s #%s: %s -> %s, checks %s, review %s%s",
            t.repository,
            t.pr_number,
            t.before,
            t.after,
            t.checks,
            t.review,
            f" (error: {t.error})" if t.error else "",
        )
    return {
        "tracked": len(tracked),
        "changed": sum(1 for t in tracked if t.after and t.after != t.before),
        "errors": sum(1 for t in tracked if t.error),
    }


def build_tracking_dag(schedule: str | None = None) -> DAG:
    """An hourly (by default) DAG with one task that refreshes every open PR."""
    with DAG(
        dag_id=TRACKING_DAG_ID,
        description="Refresh state, checks and reviews of the pull requests Cody Batch opened",
        schedule=schedule or Settings.from_env().tracking_schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["codybatch"],
    ) as dag:
        refresh_pull_requests()
    return dag
