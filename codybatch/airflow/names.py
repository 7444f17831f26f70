"""What the DAG factories, runners, listeners and UI share: DAG ids and the worker command.

A leaf of codybatch.airflow (it imports none of its modules), so they all import it at the
top and none imports another in a cycle."""

from __future__ import annotations

from codybatch.fleet import JOB_DAG_ID

__all__ = ["DAG_PREFIX", "JOB_DAG_ID", "worker_command"]

DAG_PREFIX = "codybatch_campaign__"  # + the campaign's name: a campaign's own DAG


def worker_command(job_id: str, repository: str) -> list[str]:
    """What a worker runs, locally or in a Batch container."""
    return ["codybatch", "worker", "--job-id", job_id, "--repository", repository]
