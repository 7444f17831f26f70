"""The Batch runner: `process` as one AWS Batch job per repository (the provider's BatchOperator).

Each Batch container runs exactly `codybatch worker --job-id J --repository R`; secrets come
from the job definition (Secrets Manager), never from container overrides.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from typing import Any

from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.sdk import task

from codybatch.airflow.names import worker_command
from codybatch.settings import Settings

log = logging.getLogger(__name__)

# Batch job states before SUCCEEDED/FAILED: these jobs can still be stopped.
ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


def batch_job_name(job_id: str, index: int, repository: str) -> str:
    """A Batch job name (128 of [A-Za-z0-9_-]) that starts with the Cody Batch job id."""
    tail = re.sub(r"[^A-Za-z0-9_-]+", "-", repository.rstrip("/")).strip("-_")
    return f"{job_id}-{index}-{tail[-80:]}"[:128]


def batch_submission(job_id: str, index: int, repository: str) -> dict[str, Any]:
    """The mapped BatchOperator arguments of one repository."""
    return {
        "job_name": batch_job_name(job_id, index, repository),
        "container_overrides": {"command": worker_command(job_id, repository)},
        "tags": {"jobId": job_id, "repository": repository},
    }


@task
def batch_jobs(items: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One Batch submission per registered repository (mapped values are not templated)."""
    return [batch_submission(i["job_id"], n, i["repository"]) for n, i in enumerate(items)]


@task(trigger_rule="all_done")
def stop_batch_jobs(items: list[dict[str, str]] | None = None) -> list[str]:
    """Teardown: terminate this job's Batch jobs that are still queued or running."""
    if not items:
        return []
    return terminate_batch_jobs(items[0]["job_id"], Settings.from_env())


def can_defer() -> bool:
    """Whether the provider's Batch trigger can run: it needs aiobotocore."""
    return importlib.util.find_spec("aiobotocore") is not None


def batch_process(items: Any, settings: Settings) -> Any:
    """`process` mapped over the registered repositories, plus the teardown that stops leftovers."""
    deferrable = settings.batch_deferrable and can_defer()
    if settings.batch_deferrable and not deferrable:
        log.warning("aiobotocore is not installed: Batch jobs are watched from the worker slot")
    submissions = batch_jobs(items)
    process = BatchOperator.partial(
        task_id="process",
        job_queue=settings.batch_job_queue,
        job_definition=settings.batch_job_definition,
        aws_conn_id=settings.aws_conn_id,
        region_name=settings.aws_region,
        deferrable=deferrable,
        awslogs_enabled=True,
        pool=settings.pool,
        map_index_template="{{ task.tags['repository'] }}",
    ).expand_kwargs(submissions)
    # A teardown runs even when someone marks the run failed (normal tasks are skipped then),
    # and a deferred BatchOperator that is failed or killed leaves its Batch job running.
    process >> stop_batch_jobs(items).as_teardown(setups=submissions)
    return process


def terminate_batch_jobs(job_id: str, settings: Settings, reason: str | None = None) -> list[str]:
    """Terminate the job's queued or running Batch jobs; return their Batch job ids."""
    hook = BatchClientHook(aws_conn_id=settings.aws_conn_id, region_name=settings.aws_region)
    client = hook.client
    reason = reason or f"Cody Batch job {job_id} ended (run finished, failed or cancelled)"
    stopped = []
    pages = client.get_paginator("list_jobs").paginate(
        jobQueue=settings.batch_job_queue,
        filters=[{"name": "JOB_NAME", "values": [f"{job_id}-*"]}],
    )
    for page in pages:
        for summary in page["jobSummaryList"]:
            # The name filter is a prefix match: keep only this job's own names.
            if summary["status"] in ACTIVE_STATES and summary["jobName"].startswith(job_id + "-"):
                client.terminate_job(jobId=summary["jobId"], reason=reason)
                stopped.append(summary["jobId"])
    if stopped:
        log.info("terminated %d Batch jobs of %s: %s", len(stopped), job_id, stopped)
    return stopped
