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
    from codybatch.airflow.aws import open_store
    from codybatch.sweep import track_pull_requests

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


@task
def find_follow_ups() -> list[dict[str, str]]:
    """The open PRs whose jobs let Claude follow up (one mapped follow-up each)."""
    from codybatch.airflow.aws import open_store
    from codybatch.followup import followup_candidates

    settings = Settings.from_env()
    if not settings.github_token:
        return []
    return followup_candidates(open_store(settings), settings)


def follow_up(job_id: str, repository: str) -> str:
    """`codybatch follow-up JOB REPOSITORY`: refresh the PR, run the round that is due."""
    from codybatch.airflow.aws import open_store
    from codybatch.followup import run_followups

    settings = Settings.from_env()
    done = run_followups(job_id, repository, settings, open_store(settings), by="tracking")
    notes = [f"round {f.number} {f.trigger}: {f.outcome} {f.note}" for _, f in done if f]
    for note in notes:
        log.info("%s: %s", repository, note)
    return "; ".join(notes) or "nothing due"


def build_tracking_dag(schedule: str | None = None) -> DAG:
    """An hourly (by default) DAG: refresh every open PR (and merge the green ones whose job
    says so), then one follow-up per PR whose job lets Claude answer its checks and reviews."""
    settings = Settings.from_env()
    with DAG(
        dag_id=TRACKING_DAG_ID,
        description="Refresh state, checks and reviews of the pull requests Cody Batch opened",
        schedule=schedule or settings.tracking_schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["codybatch"],
    ) as dag:
        refreshed = refresh_pull_requests()
        due = find_follow_ups()
        refreshed >> due
        # One follow-up per repository, one at a time: rounds push and comment, and GitHub's
        # secondary limits punish bursts (pr_slot spaces the calls themselves too).
        task(
            follow_up,
            task_id="follow_up",
            pool=settings.pool,
            max_active_tis_per_dag=1,
            map_index_template="{{ task.op_kwargs['repository'] }}",
        ).expand_kwargs(due)
    return dag
