"""The codybatch_job DAG through a real Airflow (SQLite metadata DB) with dag.test()."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.records import JobStatus, RepositoryStatus, job_id_for_run
from codybatch.store.local import LocalStore
from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic, finish, reply

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.airflow
__all__ = ["fake_anthropic"]  # a fixture


@pytest.fixture
def job_dag(airflow_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py"))
    assert bag.import_errors == {}
    return bag.get_dag("codybatch_job")


def _task_states(run) -> dict[tuple[str, int], tuple[str, str | None]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {(ti.task_id, ti.map_index): (ti.state, ti.rendered_map_index) for ti in tis}


def test_dags_folder_imports_cleanly(airflow_home: Path, codybatch_home: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from codybatch.airflow.campaigns import sync_campaign_stubs
    from codybatch.demo import make_examples

    make_examples(codybatch_home / "examples")  # what the example campaign works on
    sync_campaign_stubs()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert "codybatch_campaign__legacy_lib_upgrade" in bag.dag_ids
    assert "codybatch_job_sweep" in bag.dag_ids
    tracking = bag.get_dag("codybatch_pr_tracking")
    assert tracking.timetable.expression == "0 * * * *"
    dag = bag.get_dag("codybatch_job")
    assert dag is not None
    assert {t.task_id for t in dag.tasks} == {
        "validate",
        "register",
        "process",
        "request_approval",
        "approval",
        "publish_approved",
        "finalize",
    }
    params = dag.params.dump()
    assert {"name", "prompt", "repositories", "create_pull_requests", "steps"} <= set(params)


def test_job_runs_end_to_end(job_dag, demo_conf: dict, codybatch_home: Path) -> None:
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "success"
    job_id = job_id_for_run("codybatch_job", run.run_id)
    store = LocalStore(codybatch_home)
    job = store.get_job(job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    assert job.dag_id == "codybatch_job" and job.run_id == run.run_id
    results = {Path(r.repository).name: r for r in store.list_results(job_id)}
    assert {n: r.status for n, r in results.items()} == {
        "billing-service": RepositoryStatus.COMPLETED,
        "web-frontend": RepositoryStatus.COMPLETED,
        "docs-site": RepositoryStatus.COMPLETED,
    }
    assert results["billing-service"].were_changes_necessary is True
    assert results["web-frontend"].were_changes_necessary is True
    assert results["docs-site"].were_changes_necessary is False
    patch = store.get_patch(job_id, results["billing-service"].repository).decode()
    assert "+  return newFunction(items, {version: 2});" in patch
    assert store.get_patch(job_id, results["docs-site"].repository) == b""

    states = _task_states(run)
    labels = {label for (task, _), (_, label) in states.items() if task == "process"}
    assert labels == set(demo_conf["repositories"])  # mapped instances named by repository


def test_airflow_refuses_a_conf_outside_the_params_schema(job_dag, demo_conf: dict) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    demo_conf["repositories"] = [f"acme/repo{i}" for i in range(6)]
    with pytest.raises(ParamValidationError, match=r"param repositories: .* is too long"):
        job_dag.test(run_conf=demo_conf)


def test_bad_conf_fails_at_validate_and_is_recorded_as_failed(
    job_dag, demo_conf: dict, codybatch_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demo_conf["colour"] = "blue"  # not a param: only the validate task sees it
    demo_conf["steps"] = []  # and no prompt either: a rule across fields
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "failed"
    states = _task_states(run)
    assert states[("validate", -1)][0] == "failed"
    assert all(state != "success" for (task, _), (state, _) in states.items() if task != "validate")
    job = LocalStore(codybatch_home).get_job(job_id_for_run("codybatch_job", run.run_id))
    assert job is not None and job.status == JobStatus.FAILED  # listed, with why
    assert [e["field"] for e in job.spec["errors"]] == ["colour", "prompt"]
    assert "prompt: is required unless steps are given" in job.error
    assert job.spec["input"]["colour"] == "blue" and job.repositories == []
    assert LocalStore(codybatch_home).list_results(job.job_id) == []  # nothing was cloned
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("invalid job")]
    assert "invalid job: prompt: is required unless steps are given: say what to change" in logged


def test_outside_allowlist_fails_at_validate(
    job_dag, demo_conf: dict, codybatch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODYBATCH_ALLOWED_REPOSITORIES", "github.com/acme/*")
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "failed"
    assert _task_states(run)[("validate", -1)][0] == "failed"
    [job] = LocalStore(codybatch_home).list_jobs()
    assert job.status == JobStatus.FAILED
    assert {e["field"] for e in job.spec["errors"]} == {
        "repositories[0]",
        "repositories[1]",
        "repositories[2]",
    }


def test_a_github_job_without_a_token_and_a_prompt_without_a_key_fail_at_validate(
    job_dag, demo_conf: dict, codybatch_home: Path
) -> None:
    demo_conf["repositories"] = ["acme/billing", "acme/web"]
    demo_conf["prompt"] = "Replace oldFunction with newFunction."
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "failed"
    [job] = LocalStore(codybatch_home).list_jobs()
    assert job.status == JobStatus.FAILED
    errors = {e["field"]: e["message"] for e in job.spec["errors"]}
    assert "GITHUB_TOKEN is not set" in errors["repositories"]
    assert "ANTHROPIC_API_KEY is not set" in errors["prompt"]


def test_failing_repository_does_not_stop_the_others(
    job_dag, demo_conf: dict, codybatch_home: Path, example_repos: list[Path]
) -> None:
    # A first step that fails only in docs-site (its README does not mention billing).
    demo_conf["steps"] = ["test ! -f README.md || grep -q billing README.md", *demo_conf["steps"]]
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "failed"  # the run shows red when a repository failed
    job_id = job_id_for_run("codybatch_job", run.run_id)
    store = LocalStore(codybatch_home)
    statuses = {Path(r.repository).name: r.status for r in store.list_results(job_id)}
    assert statuses == {
        "billing-service": RepositoryStatus.COMPLETED,
        "web-frontend": RepositoryStatus.COMPLETED,
        "docs-site": RepositoryStatus.FAILED,
    }
    failed = store.get_result(job_id, str(example_repos[2]))
    assert "step 1" in failed.error and "exited with 1" in failed.error
    assert store.get_job(job_id).status == JobStatus.PARTIAL


def test_retired_model_fails_at_validate_with_no_messages_call(
    job_dag, demo_conf: dict, codybatch_home: Path, fake_anthropic: FakeAnthropic
) -> None:
    demo_conf.update(prompt="Replace oldFunction.", model="claude-sonnet-4-5")
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "failed"
    assert _task_states(run)[("validate", -1)][0] == "failed"
    assert next(r.path for r in fake_anthropic.model_lookups) == "/v1/models/claude-sonnet-4-5"
    assert fake_anthropic.message_requests == []
    [job] = LocalStore(codybatch_home).list_jobs()  # refused: a FAILED job that says why
    assert job.status == JobStatus.FAILED and job.repositories == []
    assert [e["field"] for e in job.spec["errors"]] == ["model"]


def test_deprecated_model_runs_and_the_job_keeps_the_warning(
    job_dag, demo_conf: dict, codybatch_home: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(reply(finish(False, "Nothing to change here.")))
    demo_conf.update(
        prompt="Replace oldFunction.",
        model="claude-haiku-4-5",
        steps=[],
        repositories=demo_conf["repositories"][:1],
    )
    run = job_dag.test(run_conf=demo_conf)

    assert run.state == "success"
    job = LocalStore(codybatch_home).get_job(job_id_for_run("codybatch_job", run.run_id))
    assert job is not None and job.status == JobStatus.COMPLETED
    (warning,) = job.warnings
    assert "'claude-haiku-4-5' is deprecated and retires on 2027-04-01" in warning
    assert len(fake_anthropic.answered) == 1
