"""jobs: register, finalize (status and usage from the results) and cancel."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from codybatch.jobs import (
    cancel_job,
    close_job,
    finalize_job,
    new_job_id,
    register_job,
    sweep_jobs,
)
from codybatch.records import Job, JobStatus, RepositoryStatus, Usage
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from codybatch.store import NotFoundError
from codybatch.store.local import LocalStore

REPOS = ["acme/one", "acme/two", "acme/three"]
KEYS = [f"github.com/{r}" for r in REPOS]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "home")


@pytest.fixture
def job_id(store: LocalStore) -> str:
    spec = JobSpec.parse({"name": "n", "prompt": "p", "repositories": REPOS}, Settings())
    return register_job(spec, store, dag_id="codybatch_job", run_id="manual__1").job_id


def finish(
    store: LocalStore, job_id: str, repository: str, status: RepositoryStatus, usage: Usage
) -> None:
    result = store.get_result(job_id, repository)
    assert result is not None
    result.status = status
    result.usage = usage
    store.save_result(result)


def test_register_job_writes_pending_records_and_is_idempotent(
    store: LocalStore, job_id: str
) -> None:
    job = store.get_job(job_id)
    assert job is not None
    assert job.status == JobStatus.PENDING and job.repositories == KEYS
    assert (job.dag_id, job.run_id) == ("codybatch_job", "manual__1")
    assert [r.status for r in store.list_results(job_id)] == [RepositoryStatus.PENDING] * 3
    other = JobSpec.parse({"name": "other", "prompt": "p", "repositories": ["x/y"]}, Settings())
    assert register_job(other, store, job_id=job_id) == job
    assert len(store.list_results(job_id)) == 3 and len(store.list_jobs()) == 1


def test_new_job_ids_are_unique() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("job-") for i in ids)


def test_finalize_all_completed(store: LocalStore, job_id: str) -> None:
    for i, key in enumerate(KEYS):
        finish(store, job_id, key, RepositoryStatus.COMPLETED, Usage(10 * i, 1, 2, 3, 0.125))
    job = finalize_job(store, job_id)
    assert job.status == JobStatus.COMPLETED and job.error is None
    assert job.usage == Usage(30, 3, 6, 9, 0.375)
    assert store.get_job(job_id) == job


def test_finalize_partial(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage(1, 1, 0, 0, 0.01))
    finish(store, job_id, KEYS[1], RepositoryStatus.FAILED, Usage(2, 2, 0, 0, 0.02))
    finish(store, job_id, KEYS[2], RepositoryStatus.SKIPPED, Usage())
    job = finalize_job(store, job_id)
    assert job.status == JobStatus.PARTIAL
    assert job.error == f"failed: {KEYS[1]}"
    assert job.usage == Usage(3, 3, 0, 0, 0.03)


def test_finalize_all_failed(store: LocalStore, job_id: str) -> None:
    for key in KEYS:
        finish(store, job_id, key, RepositoryStatus.FAILED, Usage())
    job = finalize_job(store, job_id)
    assert job.status == JobStatus.FAILED
    assert job.error == f"failed: {', '.join(KEYS)}"


def test_unfinished_results_become_failed_with_a_reason(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage(5, 5, 0, 0, 0.5))
    finish(store, job_id, KEYS[1], RepositoryStatus.RUNNING, Usage(1, 0, 0, 0, 0.1))
    # KEYS[2] never started (PENDING)
    job = finalize_job(store, job_id)
    assert job.status == JobStatus.PARTIAL
    results = store.list_results(job_id)
    assert [r.status for r in results] == [
        RepositoryStatus.COMPLETED,
        RepositoryStatus.FAILED,
        RepositoryStatus.FAILED,
    ]
    for r in results[1:]:
        assert r.error is not None and "stopped before finishing" in r.error
        assert "re-run" in r.error and r.finished_at is not None
    assert results[0].error is None
    assert job.usage == Usage(6, 5, 0, 0, 0.6)


def test_finalize_with_an_explicit_reason(store: LocalStore, job_id: str) -> None:
    job = finalize_job(store, job_id, reason="the Batch job was terminated")
    assert job.status == JobStatus.FAILED
    assert {r.error for r in store.list_results(job_id)} == {"the Batch job was terminated"}


def test_finalize_twice_gives_the_same_job(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage(1, 0, 0, 0, 0.0))
    first = finalize_job(store, job_id)
    revisions = [r.revision for r in store.list_results(job_id)]
    second = finalize_job(store, job_id)
    assert (second.status, second.usage, second.error) == (first.status, first.usage, first.error)
    assert [r.revision for r in store.list_results(job_id)] == revisions


def test_finalize_keeps_a_cancelled_job_cancelled(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage())
    cancel_job(store, job_id)
    job = finalize_job(store, job_id)
    assert job.status == JobStatus.CANCELLED


def test_finalize_of_an_unknown_job(store: LocalStore) -> None:
    with pytest.raises(NotFoundError):
        finalize_job(store, "job-missing")


def test_cancel_job(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage())
    finish(store, job_id, KEYS[1], RepositoryStatus.RUNNING, Usage())
    store.update_job(job_id, status=JobStatus.RUNNING)
    job = cancel_job(store, job_id)
    assert job.status == JobStatus.CANCELLED
    results = store.list_results(job_id)
    assert [r.status for r in results] == [
        RepositoryStatus.COMPLETED,
        RepositoryStatus.CANCELLED,
        RepositoryStatus.CANCELLED,
    ]
    assert results[0].error is None
    assert {r.error for r in results[1:]} == {"cancelled by a user"}


def test_cancel_leaves_a_finished_job_alone(store: LocalStore, job_id: str) -> None:
    for key in KEYS:
        finish(store, job_id, key, RepositoryStatus.COMPLETED, Usage())
    done = finalize_job(store, job_id)
    assert cancel_job(store, job_id) == done
    assert store.get_job(job_id) == done


def test_cancel_of_an_unknown_job(store: LocalStore) -> None:
    with pytest.raises(KeyError):
        cancel_job(store, "job-missing")


def test_close_job_fails_or_cancels_what_is_left_open(store: LocalStore, job_id: str) -> None:
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage())
    job = close_job(store, job_id, "the run was marked success", RepositoryStatus.CANCELLED)
    assert job is not None and job.status == JobStatus.PARTIAL
    errors = [r.error for r in store.list_results(job_id)]
    assert errors == [None, "the run was marked success", "the run was marked success"]
    assert close_job(store, "job-missing", "why") is None


def test_close_job_leaves_a_settled_job_alone_and_redoes_a_stale_one(
    store: LocalStore, job_id: str
) -> None:
    for key in KEYS:
        finish(store, job_id, key, RepositoryStatus.FAILED, Usage())
    settled = finalize_job(store, job_id)
    assert close_job(store, job_id, "why") == settled
    # A cleared run re-ran a repository after the job was finalized: the status follows.
    finish(store, job_id, KEYS[0], RepositoryStatus.COMPLETED, Usage())
    assert close_job(store, job_id, "why").status == JobStatus.PARTIAL


def test_sweep_closes_jobs_of_ended_or_vanished_runs_only(store: LocalStore) -> None:
    spec = JobSpec.parse({"name": "n", "prompt": "p", "repositories": REPOS[:1]}, Settings())
    states = {"ended": "failed", "live": "running", "queued": "queued", "new": None}
    for run_id in states:
        register_job(spec, store, job_id=f"job-{run_id}", dag_id="codybatch_job", run_id=run_id)
    old = Job(job_id="job-old", spec=spec.to_dict(), dag_id="codybatch_job", run_id="old")
    old.created_at -= timedelta(hours=1)
    store.create_job(old)
    register_job(spec, store, job_id="job-cli")  # `codybatch run`: no DAG run to ask about

    closed = sweep_jobs(store, lambda dag_id, run_id: states.get(run_id))

    assert sorted(j.job_id for j in closed) == ["job-ended", "job-old"]
    assert "ended (failed)" in store.list_results("job-ended")[0].error
    assert "no longer exists" in store.list_results("job-old")[0].error
    for open_job in ("job-live", "job-queued", "job-new", "job-cli"):
        assert store.get_job(open_job).status == JobStatus.PENDING
