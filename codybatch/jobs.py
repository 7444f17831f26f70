"""Job lifecycle shared by the CLI, the DAG and the UI: register, finalize, cancel, sweep."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import reduce
from typing import Any

from codybatch.records import (
    FINISHED_JOB_STATUSES,
    Job,
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    job_status_from_results,
    utcnow,
)
from codybatch.spec import FieldError, JobSpec, SpecError
from codybatch.store import Store
from codybatch.text import readable

UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:16]


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


def record_refused_job(
    store: Store, conf: Any, errors: Sequence[FieldError], job_id: str, dag_id: str, run_id: str
) -> Job:
    """Record a run whose job was refused at validate: FAILED, with its field errors and a
    readable copy of its input; a job the plugin registered for the run becomes FAILED too."""
    data = readable(conf) if isinstance(conf, Mapping) else {"conf": readable(conf)}
    name = data.get("name")
    if not (isinstance(name, str) and name.strip()):
        name = "(invalid job)"
    error = str(SpecError(errors))
    spec = {
        "name": name,
        "repositories": [],
        "input": data,
        "errors": [{"field": e.field, "message": e.message} for e in errors],
    }
    job = Job(job_id, spec, JobStatus.FAILED, dag_id=dag_id, run_id=run_id, error=error)
    stored = store.create_job(job)
    if stored.status == JobStatus.FAILED and stored.error == error:
        return stored
    _close_unfinished(store, job_id, RepositoryStatus.FAILED, f"the job was refused: {error}")
    return store.update_job(
        job_id, only_from=list(UNFINISHED), status=JobStatus.FAILED, error=error
    )


def finalize_job(
    store: Store,
    job_id: str,
    reason: str | None = None,
    unfinished: RepositoryStatus = RepositoryStatus.FAILED,
) -> Job:
    """Close the job: results left unfinished get `unfinished` (FAILED) and the reason, the job
    status and usage are summed."""
    reason = (
        reason
        or "the worker stopped before finishing (killed, timed out or never started); "
        "re-run the job to retry this repository"
    )
    _close_unfinished(store, job_id, unfinished, reason)
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


def refresh_usage(store: Store, job_id: str) -> Job:
    """Set the job's usage to the sum of its results' (a follow-up round adds to a result's
    usage after the job finished); its status stays as it is."""
    usage = reduce(lambda a, b: a + b, (r.usage for r in store.list_results(job_id)), Usage())
    return store.update_job(job_id, usage=usage)


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


def close_job(
    store: Store, job_id: str, reason: str, unfinished: RepositoryStatus = RepositoryStatus.FAILED
) -> Job | None:
    """Finalize a job whose run ended, if the job or any repository is still open (the run was
    marked failed or success, a task failed early, the run was cleared); None if no such job."""
    job = store.get_job(job_id)
    if job is None:
        return None
    results = store.list_results(job_id)
    settled = all(r.finished for r in results) and job.status in FINISHED_JOB_STATUSES
    # A cleared run may have re-run repositories since the job was last finalized.
    if settled and job.status in (JobStatus.CANCELLED, job_status_from_results(results)):
        return job
    return finalize_job(store, job_id, reason, unfinished)


# A run the store names but Airflow does not (yet) know: give a trigger this long to land.
SWEEP_GRACE = timedelta(minutes=10)


def sweep_jobs(
    store: Store, run_state: Callable[[str, str], str | None], grace: timedelta = SWEEP_GRACE
) -> list[Job]:
    """Close unfinished jobs whose DAG run has finished or is gone; return the jobs closed.

    `run_state(dag_id, run_id)` is the run's state (queued, running, success, failed) or None."""
    closed = []
    for status in UNFINISHED:
        for job in store.iter_jobs(status=status):  # every one, page by page (keyset)
            if not (job.dag_id and job.run_id):
                continue  # a `codybatch run` job: its own process finalizes it
            state = run_state(job.dag_id, job.run_id)
            if state in ("queued", "running"):
                continue
            if state is None:
                if utcnow() - job.created_at < grace:
                    continue
                why = f"the DAG run {job.run_id} no longer exists (deleted) in Airflow"
            else:
                why = f"the DAG run ended ({state}) without finishing this repository"
            done = close_job(store, job.job_id, why)
            if done is not None:
                closed.append(done)
    return closed


def _close_unfinished(store: Store, job_id: str, status: RepositoryStatus, error: str) -> None:
    def close(result: RepositoryResult) -> bool:
        if result.finished:  # a worker that finished meanwhile wins: its result stands
            return False
        result.status, result.error, result.finished_at = status, error, utcnow()
        return True

    for result in store.list_results(job_id):
        if not result.finished:
            store.update_result(job_id, result.repository, close)
