"""No job left hanging: whatever ends a job's DAG run closes the job and its repositories.

How a run can end, and what closes its job:
- naturally (success, failure, validate failing after the plugin registered the job):
  `finalize` (trigger rule all_done), then the DAG's on_success/on_failure callbacks, which
  Airflow 3.3 runs in the dag-processor (the scheduler queues them in the database);
- marked failed or success by a person (UI or REST API): Airflow runs no DAG callback then,
  only listener hooks inside the api-server, so the plugin registers `RunEndListener`;
- anything else (a deleted run, a component that died mid-way): the `codybatch_job_sweep` DAG.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.listeners import hookimpl
from airflow.sdk import DAG, task

from codybatch.airflow.names import DAG_PREFIX, JOB_DAG_ID
from codybatch.records import Job, RepositoryStatus, job_id_for_run
from codybatch.settings import Settings

log = logging.getLogger(__name__)

SWEEP_DAG_ID = "codybatch_job_sweep"
SWEEP_EVERY = timedelta(minutes=5)


def is_job_dag(dag_id: str) -> bool:
    """The on-demand job DAG or a campaign's copy of it."""
    return dag_id == JOB_DAG_ID or dag_id.startswith(DAG_PREFIX)


def close_run(dag_id: str, run_id: str, state: str, why: str, settings: Settings) -> Job | None:
    """Close the job of a run that ended in `state`; repositories left open say why."""
    if not is_job_dag(dag_id):
        return None
    from codybatch.airflow.aws import open_store
    from codybatch.jobs import close_job

    if state == "success":
        # Marked success by a person: what never ran was skipped on purpose, not failed.
        reason = f"the DAG run was marked success ({why}) before this repository finished"
        unfinished = RepositoryStatus.CANCELLED
    else:
        reason = f"the DAG run ended {state} ({why}) before this repository finished"
        unfinished = RepositoryStatus.FAILED
    job = close_job(open_store(settings), job_id_for_run(dag_id, run_id), reason, unfinished)
    if job is not None:
        log.info("job %s of %s/%s: %s", job.job_id, dag_id, run_id, job.status)
    return job


def _close_safely(dag_id: str, run_id: str, state: str, why: str) -> None:
    # Runs inside Airflow's own components: a store outage is logged, the sweep retries.
    try:
        close_run(dag_id, run_id, state, why, Settings.from_env())
    except Exception:
        log.exception("could not close the job of %s/%s; the sweep will", dag_id, run_id)


def on_run_end(context: Any) -> None:
    """The job DAG's on_success_callback and on_failure_callback."""
    run = context["dag_run"]
    state = str(getattr(run.state, "value", run.state) or "failed")
    _close_safely(run.dag_id, run.run_id, state, str(context.get("reason") or state))


class RunEndListener:
    """Airflow listener hooks: fired by the scheduler when a run ends and by the api-server
    when a person marks a run failed or success."""

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _close_safely(dag_run.dag_id, dag_run.run_id, "success", msg or "success")

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _close_safely(dag_run.dag_id, dag_run.run_id, "failed", msg or "failed")


def run_state(dag_id: str, run_id: str) -> str | None:
    """A run's state through the Task SDK (tasks have no database access); None if gone."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    if not RuntimeTaskInstance.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
        return None
    state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    return str(getattr(state, "value", state))


@task
def sweep_jobs() -> list[str]:
    """Close the jobs whose run finished or is gone while they stayed PENDING or RUNNING."""
    from codybatch import jobs
    from codybatch.airflow.aws import open_store

    closed = jobs.sweep_jobs(open_store(Settings.from_env()), run_state)
    for job in closed:
        log.info("closed job %s (%s/%s): %s", job.job_id, job.dag_id, job.run_id, job.status)
    return [job.job_id for job in closed]


def build_sweep_dag(every: timedelta = SWEEP_EVERY) -> DAG:
    """A small scheduled DAG that closes jobs left open by runs that ended without them."""
    with DAG(
        dag_id=SWEEP_DAG_ID,
        description="Close Cody Batch jobs whose DAG run ended or vanished without closing them",
        schedule=every,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["codybatch"],
    ) as dag:
        sweep_jobs()
    return dag
