"""Every way a job's DAG run can end leaves the job and its repositories final, saying why.

Through a real Airflow: dag.test() runs, the api-server app's REST API marks and clears runs
(its listener hooks fire in-process, as in the api-server), and the sweep DAG runs for real.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codybatch.airflow.dag import JOB_DAG_ID
from codybatch.airflow.ui.runs import fail_run, new_run_id, run_state, trigger_run
from codybatch.jobs import register_job
from codybatch.records import (
    FINISHED_JOB_STATUSES,
    Job,
    JobStatus,
    RepositoryStatus,
    job_id_for_run,
)
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from codybatch.store.local import LocalStore
from tests.airflow.test_dag import job_dag  # noqa: F401  (fixture)
from tests.airflow.ui.conftest import (  # noqa: F401  (fixtures)
    admin,
    airflow_app,
    client,
    session_client,
    tokens,
)

pytestmark = pytest.mark.airflow

RUNS = f"/api/v2/dags/{JOB_DAG_ID}/dagRuns"


@pytest.fixture
def store(codybatch_home: Path) -> LocalStore:
    return LocalStore(codybatch_home)


def _submit(admin, repos: list[str]) -> dict:  # noqa: F811
    """POST /jobs through the plugin: a queued run and a registered PENDING job."""
    body = {"name": "n", "steps": ["true"], "repositories": repos}
    response = admin.post("/codybatch/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _final(store: LocalStore, job_id: str) -> tuple[Job, list]:
    job = store.get_job(job_id)
    assert job is not None
    results = store.list_results(job_id)
    assert job.status in FINISHED_JOB_STATUSES
    assert all(r.finished and r.finished_at is not None for r in results)
    return job, results


def test_a_run_marked_failed_through_the_rest_api_fails_its_job(
    admin,  # noqa: F811
    store: LocalStore,
    example_repos: list[Path],
) -> None:
    created = _submit(admin, [str(p) for p in example_repos[:2]])
    response = admin.patch(f"{RUNS}/{created['run_id']}", json={"state": "failed"})
    assert response.status_code == 200, response.text

    job, results = _final(store, created["job_id"])
    assert job.status == JobStatus.FAILED
    assert {r.status for r in results} == {RepositoryStatus.FAILED}
    for r in results:
        assert "the DAG run ended failed" in r.error and "manually set" in r.error


def test_a_run_marked_success_cancels_what_never_ran(
    admin,  # noqa: F811
    store: LocalStore,
    example_repos: list[Path],
) -> None:
    created = _submit(admin, [str(example_repos[0])])
    response = admin.patch(f"{RUNS}/{created['run_id']}", json={"state": "success"})
    assert response.status_code == 200, response.text

    job, results = _final(store, created["job_id"])
    assert job.status == JobStatus.CANCELLED
    assert results[0].status == RepositoryStatus.CANCELLED
    assert "marked success" in results[0].error


def test_validate_failing_after_the_plugin_registered_the_job_fails_it(
    job_dag,  # noqa: F811
    demo_conf: dict,
    store: LocalStore,
    example_repos: list[Path],
) -> None:
    # The plugin registers the job of the run it triggers; then a repository disappears.
    logical_date = datetime(2026, 3, 1, 12, tzinfo=UTC)
    run_id = f"manual__{logical_date.isoformat()}"
    spec = JobSpec.parse(demo_conf, Settings.from_env())
    job_id = job_id_for_run(JOB_DAG_ID, run_id)
    register_job(spec, store, job_id=job_id, dag_id=JOB_DAG_ID, run_id=run_id)
    shutil.rmtree(example_repos[2])

    run = job_dag.test(run_conf=demo_conf, logical_date=logical_date, run_after=logical_date)

    assert run.run_id == run_id and run.state == "failed"
    job, results = _final(store, job_id)
    assert job.status == JobStatus.FAILED
    assert {r.status for r in results} == {RepositoryStatus.FAILED}
    assert all("the job was refused" in r.error for r in results)  # with validate's errors


def test_a_cleared_run_marked_failed_keeps_every_result_final(
    job_dag,  # noqa: F811
    admin,  # noqa: F811
    demo_conf: dict,
    store: LocalStore,
) -> None:
    demo_conf["steps"] = ["test ! -f README.md || grep -q billing README.md", *demo_conf["steps"]]
    run = job_dag.test(run_conf=demo_conf)
    job_id = job_id_for_run(JOB_DAG_ID, run.run_id)
    assert store.get_job(job_id).status == JobStatus.PARTIAL

    response = admin.post(
        f"/api/v2/dags/{JOB_DAG_ID}/clearTaskInstances",
        json={"dag_run_id": run.run_id, "dry_run": False, "only_failed": True},
    )
    assert response.status_code == 200, response.text
    assert run_state(JOB_DAG_ID, run.run_id) == "queued"
    # The re-run's worker had begun the failed repository again when a person failed the run.
    failed = next(r for r in store.list_results(job_id) if r.status == RepositoryStatus.FAILED)
    failed.status = RepositoryStatus.RUNNING
    store.save_result(failed)
    assert admin.patch(f"{RUNS}/{run.run_id}", json={"state": "failed"}).status_code == 200

    job, _ = _final(store, job_id)
    assert job.status == JobStatus.PARTIAL
    reopened = store.get_result(job_id, failed.repository)
    assert reopened.status == RepositoryStatus.FAILED and "ended failed" in reopened.error


def test_the_sweep_closes_jobs_whose_run_ended_or_vanished(
    airflow_app,  # noqa: F811
    store: LocalStore,
    example_repos: list[Path],
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    conf = {"name": "n", "steps": ["true"], "repositories": [str(example_repos[0])]}
    spec = JobSpec.parse(conf, Settings.from_env())
    # A run that ended without telling anyone (failed through Airflow's own functions).
    ended = new_run_id()
    trigger_run(JOB_DAG_ID, ended, conf, "test")
    assert fail_run(JOB_DAG_ID, ended)
    register_job(spec, store, job_id_for_run(JOB_DAG_ID, ended), JOB_DAG_ID, ended)
    # A job whose run was deleted long ago, and one whose run was just triggered.
    gone = Job(
        job_id=job_id_for_run(JOB_DAG_ID, "manual__gone"),
        spec=spec.to_dict(),
        dag_id=JOB_DAG_ID,
        run_id="manual__gone",
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    store.create_job(gone)
    waiting = new_run_id()
    trigger_run(JOB_DAG_ID, waiting, conf, "test")
    register_job(spec, store, job_id_for_run(JOB_DAG_ID, waiting), JOB_DAG_ID, waiting)

    root = Path(__file__).resolve().parents[2]
    bag = DagBag(dag_folder=str(root / "dags" / "codybatch_job_sweep.py"))
    assert bag.import_errors == {}
    sweep = bag.get_dag("codybatch_job_sweep").test()

    assert sweep.state == "success"
    job, results = _final(store, job_id_for_run(JOB_DAG_ID, ended))
    assert job.status == JobStatus.FAILED and "ended (failed)" in results[0].error
    job, results = _final(store, gone.job_id)
    assert "no longer exists" in results[0].error
    assert store.get_job(job_id_for_run(JOB_DAG_ID, waiting)).status == JobStatus.PENDING
