"""The Batch runner through dag.test(), against the CloudFormation stack deployed into moto.

moto's Batch runs no containers; tests.fakes.aws.LocalBatch runs each submitted container
command as a local process with the job definition's environment and secrets, so the
worker really writes its result to the moto-backed AWS store before `finalize` reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from codybatch.records import JobStatus, RepositoryStatus, job_id_for_run
from codybatch.settings import Settings
from codybatch.store.aws import AwsStore
from tests.fakes.aws import (
    FAKE_SECRETS,
    LocalBatch,
    aws_environment,
    deploy_stack,
    moto_endpoint,  # noqa: F401 (fixture)
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "include" / "aws" / "codybatch.yaml"

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, airflow_home: Path) -> Iterator[dict[str, str]]:  # noqa: F811
    """The template deployed into moto; Airflow's environment set from its outputs."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in aws_environment(moto_endpoint).items():
            env.setenv(name, value)
        # The workers' allowlist (from the job definition) admits the example repositories.
        # (moto's CloudFormation turns an empty parameter into a list, so not "" here.)
        allowed = f"{tempfile.gettempdir()}/*"
        outputs = deploy_stack(f"cbr{uuid.uuid4().hex[:8]}", TEMPLATE, AllowedRepositories=allowed)
        for line in outputs["AirflowEnvironment"].split():
            env.setenv(*line.split("=", 1))
        connection = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
        }
        env.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        yield outputs


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiobotocore the operator polls from the worker slot, pausing 1-10 s at random
    between checks; the hook documents these class attributes as the knob to change that."""
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MIN", 0)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MAX", 0.05)


@pytest.fixture
def local_batch(stack: dict[str, str], moto_endpoint: str, tmp_path: Path) -> Iterator[LocalBatch]:  # noqa: F811
    # Only what the host gives a container; CODYBATCH_* come from the job definition.
    base = aws_environment(moto_endpoint) | {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CODYBATCH_HOME": str(tmp_path / "container-home"),
    }
    with LocalBatch(moto_endpoint, base) as batch:
        yield batch


@pytest.fixture
def batch_dag(stack: dict[str, str]):
    from airflow.dag_processing.dagbag import DagBag

    assert Settings.from_env().runner == "batch"  # from the stack's AirflowEnvironment output
    bag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py"))
    assert bag.import_errors == {}
    return bag.get_dag("codybatch_job")


def task_states(run: Any) -> dict[tuple[str, int], tuple[str, str | None]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {(ti.task_id, ti.map_index): (ti.state, ti.rendered_map_index) for ti in tis}


def batch_jobs_of(job_id: str, queue: str) -> list[dict[str, Any]]:
    batch = boto3.client("batch")
    listed = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["*"]}])
    ids = [j["jobId"] for j in listed["jobSummaryList"] if j["jobName"].startswith(job_id)]
    return batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def test_the_batch_dag_maps_a_batch_operator_with_a_teardown(batch_dag) -> None:
    from airflow.providers.amazon.aws.operators.batch import BatchOperator

    from codybatch.airflow.batch import can_defer

    assert {t.task_id for t in batch_dag.tasks} == {
        "validate",
        "register",
        "batch_jobs",
        "process",
        "stop_batch_jobs",
        "finalize",
        "request_approval",  # review_before_publish: skipped when nothing waits for approval
        "approval",
        "publish_approved",
    }
    process = batch_dag.get_task("process")
    assert process.operator_class is BatchOperator
    kwargs = process.partial_kwargs
    settings = Settings.from_env()
    assert kwargs["job_queue"] == settings.batch_job_queue
    assert kwargs["job_definition"] == settings.batch_job_definition
    assert kwargs["deferrable"] is can_defer()  # deferrable by default, when it can defer
    assert kwargs["awslogs_enabled"] is True
    assert batch_dag.get_task("stop_batch_jobs").is_teardown
    assert "finalize" in process.downstream_task_ids


def test_a_run_submits_one_batch_job_per_repository_and_finalizes_the_job(
    batch_dag, local_batch: LocalBatch, demo_conf: dict, stack: dict[str, str]
) -> None:
    run = batch_dag.test(run_conf=demo_conf)

    assert run.state == "success"
    job_id = job_id_for_run("codybatch_job", run.run_id)
    jobs = batch_jobs_of(job_id, stack["JobQueueName"])
    assert len(jobs) == len(demo_conf["repositories"])
    submitted = {}
    for job in jobs:
        repository = job["tags"]["repository"]
        submitted[repository] = job["container"]["command"]
        assert job["tags"] == {"jobId": job_id, "repository": repository}
        assert job["jobQueue"].endswith(f":job-queue/{stack['JobQueueName']}")
        assert f":job-definition/{stack['JobDefinitionName']}:" in job["jobDefinition"]
        assert job["status"] == "SUCCEEDED"
        assert not [s for s in FAKE_SECRETS if s in json.dumps(job, default=str)]
    assert submitted == {
        r: ["codybatch", "worker", "--job-id", job_id, "--repository", r]
        for r in demo_conf["repositories"]
    }
    # The containers got the store from the job definition and the secrets from Secrets Manager.
    assert [r.exit_code for r in local_batch.runs] == [0] * len(jobs)
    for container in local_batch.runs:
        assert container.environment["CODYBATCH_JOBS_TABLE"] == stack["JobsTableName"]
        assert container.environment["ANTHROPIC_API_KEY"] == FAKE_SECRETS[0]
        assert container.environment["GITHUB_TOKEN"] == FAKE_SECRETS[1]

    store = AwsStore.from_settings(Settings.from_env())
    job = store.get_job(job_id)
    assert job.status == JobStatus.COMPLETED and job.run_id == run.run_id
    results = {Path(r.repository).name: r for r in store.list_results(job_id)}
    assert {n: r.status for n, r in results.items()} == {
        "billing-service": RepositoryStatus.COMPLETED,
        "web-frontend": RepositoryStatus.COMPLETED,
        "docs-site": RepositoryStatus.COMPLETED,
    }
    patch = store.get_patch(job_id, results["billing-service"].repository).decode()
    assert "+  return newFunction(items, {version: 2});" in patch
    stored = json.dumps([r.to_dict() for r in results.values()]) + patch
    assert not [s for s in FAKE_SECRETS if s in stored]

    states = task_states(run)
    labels = {label for (task, _), (state, label) in states.items() if task == "process"}
    assert labels == set(demo_conf["repositories"])  # mapped instances named by repository
    assert states[("stop_batch_jobs", -1)][0] == "success"
    assert states[("finalize", -1)][0] == "success"


def test_a_failing_repository_fails_its_batch_job_and_the_run(
    batch_dag, local_batch: LocalBatch, demo_conf: dict, stack: dict[str, str]
) -> None:
    # A first step that fails only in docs-site (its README does not mention billing).
    demo_conf["steps"] = ["test ! -f README.md || grep -q billing README.md", *demo_conf["steps"]]
    run = batch_dag.test(run_conf=demo_conf)

    assert run.state == "failed"
    job_id = job_id_for_run("codybatch_job", run.run_id)
    outcome = {
        Path(j["tags"]["repository"]).name: j["status"]
        for j in batch_jobs_of(job_id, stack["JobQueueName"])
    }
    assert outcome == {
        "billing-service": "SUCCEEDED",
        "web-frontend": "SUCCEEDED",
        "docs-site": "FAILED",
    }
    store = AwsStore.from_settings(Settings.from_env())
    statuses = {Path(r.repository).name: r.status for r in store.list_results(job_id)}
    assert statuses["docs-site"] == RepositoryStatus.FAILED
    assert statuses["billing-service"] == RepositoryStatus.COMPLETED
    assert store.get_job(job_id).status == JobStatus.PARTIAL
    states = task_states(run)
    process = {label: state for (task, _), (state, label) in states.items() if task == "process"}
    assert sorted(process.values()) == ["failed", "success", "success"]
    assert states[("stop_batch_jobs", -1)][0] == "success"


def test_stopping_terminates_only_this_jobs_unfinished_batch_jobs(
    local_batch: LocalBatch, stack: dict[str, str]
) -> None:
    from codybatch.airflow.batch import batch_job_name, terminate_batch_jobs

    batch = boto3.client("batch")

    def submit(job_id: str, index: int) -> str:
        return batch.submit_job(
            jobName=batch_job_name(job_id, index, "github.com/acme/widgets"),
            jobQueue=stack["JobQueueName"],
            jobDefinition=stack["JobDefinitionName"],
            containerOverrides={"command": ["true"]},
        )["jobId"]

    finished = submit("job-aaaa", 0)  # runs `true` and succeeds
    local_batch.hold = True  # the next ones stay RUNNING
    running = {submit("job-aaaa", 1), submit("job-aaaa", 2)}
    other_job = submit("job-aaaab", 0)

    assert set(terminate_batch_jobs("job-aaaa", Settings.from_env())) == running

    described = {j["jobId"]: j for j in batch.describe_jobs(jobs=[*running, other_job])["jobs"]}
    for job_id in running:
        assert "job-aaaa ended" in described[job_id]["statusReason"]
    assert "statusReason" not in described[other_job]
    assert finished not in terminate_batch_jobs("job-aaaa", Settings.from_env())
