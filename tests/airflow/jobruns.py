"""Campaign tests: the codybatch_job runs a campaign triggered, and running them."""

from __future__ import annotations


def job_runs(campaign: str) -> list:
    """The codybatch_job runs the campaign triggered, oldest first."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == "codybatch_job", DagRun.run_id.like(f"campaign__{campaign}__%"))
            .order_by(DagRun.id)
        ).all()
        session.expunge_all()
    return list(runs)


def run_job(job_dag, run) -> None:
    """Run a queued job run as the scheduler would, under its own run id (dag.test would
    otherwise make up a new one, and the job id derives from the run id)."""
    from unittest import mock

    from airflow.models.dagrun import DagRun

    with mock.patch.object(DagRun, "generate_run_id", return_value=run.run_id):
        done = job_dag.test(logical_date=run.logical_date, run_conf=run.conf)
    assert done.run_id == run.run_id
