"""Job lifecycle shared by the CLI, the DAG and the UI: register, finalize, cancel."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from functools import reduce

from codybatch.records import (
    FINISHED_JOB_STATUSES,
    Job,
    JobStatus,
    RepositoryStatus,
    Usage,
    job_status_from_results,
    utcnow,
)
from codybatch.settings import Settings
from codybatch.spec import JobSpec, SpecError
from codybatch.store import StaleWriteError, Store

UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:16]


def check_job(spec: JobSpec, settings: Settings) -> list[str]:
    """Checks before any work beyond the spec's own (the model's facts, credentials, effort):
    SpecError with every field error, else the warnings the job should carry."""
    if not spec.prompt.strip():
        return []
    from codybatch.agent.models import check_model  # the SDK only for jobs that call Claude

    check = check_model(spec, settings)
    if check.errors:
        raise SpecError(check.errors)
    return check.warnings


def register_job(
    spec: JobSpec,
    store: Store,
    job_id: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    warnings: Sequence[str] = (),
) -> Job:
    """Write the job and a PENDING result per repository; idempotent for a given job id."""
    job = Job(
        job_id=job_id or new_job_id(),
        spec=spec.to_dict(),
        dag_id=dag_id,
        run_id=run_id,
        warnings=list(warnings),
    )
    return store.create_job(job)


def finalize_job(store: Store, job_id: str, reason: str | None = None) -> Job:
    """Close the job: results left unfinished become FAILED, the job status and usage are summed."""
    _close_unfinished(
        store,
        job_id,
        RepositoryStatus.FAILED,
        reason
        or "the worker stopped before finishing (killed, timed out or never started); "
        "re-run the job to retry this repository",
    )
    results = store.list_results(job_id)
    status = job_status_from_results(results)
    usage = reduce(lambda a, b: a + b, (r.usage for r in results), Usage())
    failed = [r.repository for r in results if r.status == RepositoryStatus.FAILED]
    error = f"failed: {', '.join(failed)}" if failed else None
    # A cancel that landed meanwhile stands; a finished job may be finalized again (a re-run).
    not_cancelled = [s for s in JobStatus if s != JobStatus.CANCELLED]
    return store.update_job(
        job_id, only_from=not_cancelled, status=status, usage=usage, error=error
    )


def cancel_job(store: Store, job_id: str) -> Job:
    """Mark the job and its unfinished repositories CANCELLED; a finished job is left as it is."""
    job = store.get_job(job_id)
    if job is None:
        raise KeyError(job_id)
    if job.status in FINISHED_JOB_STATUSES:
        return job
    _close_unfinished(store, job_id, RepositoryStatus.CANCELLED, "cancelled by a user")
    # A job that finished meanwhile keeps its status.
    return store.update_job(job_id, only_from=UNFINISHED, status=JobStatus.CANCELLED)


def _close_unfinished(store: Store, job_id: str, status: RepositoryStatus, error: str) -> None:
    for result in store.list_results(job_id):
        if result.finished:
            continue
        result.status = status
        result.error = error
        result.finished_at = utcnow()
        # A worker that finished meanwhile wins: its result stands.
        with contextlib.suppress(StaleWriteError):
            store.save_result(result)
