"""Approve before publishing through a real Airflow: the job DAG's HITL task, answered
from another thread through Airflow's own HITL update (as the UI or the REST API would),
or left unanswered until the scheduler's own timeout sweep applies its default."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codybatch.records import job_id_for_run
from codybatch.store.local import LocalStore
from tests.fakes.github_server import FakeGitHub, fake_github

__all__ = ["fake_github"]
pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
OLD = "from lib import oldFunction\n\noldFunction(1)\n"
API, WEB, DOCS = (f"github.com/acme/{n}" for n in ("api", "web", "docs"))


@dataclass
class Person:
    """What Airflow's HITL handler needs of the answering user."""

    id: str
    name: str

    def get_id(self) -> str:
        return self.id

    def get_name(self) -> str:
        return self.name


@pytest.fixture
def job_dag(airflow_home: Path, fake_github: FakeGitHub, codybatch_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    fake_github.create_repo("acme/api", {"app.py": OLD})
    fake_github.create_repo("acme/web", {"web.py": OLD})
    fake_github.create_repo("acme/docs", {"index.md": "# docs\n"})
    bag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py"))
    assert bag.import_errors == {}
    return bag.get_dag("codybatch_job")


CONF = {
    "name": "Retire oldFunction",
    "steps": ["sed -i s/oldFunction/newFunction/g *.py 2>/dev/null; true"],
    "repositories": ["acme/api", "acme/web", "acme/docs"],
    "create_pull_requests": True,
    "review_before_publish": True,
}


def _respond(answer) -> threading.Thread:
    """Wait for the approval request, then answer it (answer(dag_id, run_id, detail))."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with create_session() as session:
                row = (
                    session.query(TaskInstance, HITLDetail)
                    .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
                    .filter(
                        TaskInstance.dag_id == "codybatch_job",
                        TaskInstance.state == "awaiting_input",
                    )
                    .first()
                )
                found = (row[0].dag_id, row[0].run_id, row[1].options, row[1].body) if row else None
            if found:
                answer(*found)
                return
            time.sleep(0.5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _results(run, codybatch_home: Path):
    store = LocalStore(codybatch_home)
    job_id = job_id_for_run("codybatch_job", run.run_id)
    return {r.repository: r for r in store.list_results(job_id)}


def test_a_person_approves_some_repositories_and_only_those_are_published(
    job_dag, fake_github: FakeGitHub, codybatch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codybatch.airflow.approval import answer_approval

    monkeypatch.setenv("CODYBATCH_PUBLIC_URL", "http://airflow.test:8080")
    seen = {}

    def answer(dag_id: str, run_id: str, options: list[str], body: str) -> None:
        seen.update(options=options, body=body)
        answer_approval(dag_id, run_id, [API], Person("7", "alice"))
        with pytest.raises(Exception) as again:  # answered once: Airflow refuses a second
            answer_approval(dag_id, run_id, [WEB], Person("8", "bob"))
        seen["again"] = getattr(again.value, "status_code", None)

    thread = _respond(answer)
    run = job_dag.test(run_conf=CONF)
    thread.join(5)
    assert run.state == "success"
    assert seen["options"] == [API, WEB, "Publish none"]  # docs did not change: not asked
    assert "**github.com/acme/api**: 1 files, +2 -2" in seen["body"]
    assert (
        "/codybatch/jobs/job-" in seen["body"] and "/diff/github.com%2Facme%2Fapi" in seen["body"]
    )
    assert seen["again"] == 409

    results = _results(run, codybatch_home)
    assert len(fake_github.pulls("acme/api")) == 1 and fake_github.pulls("acme/web") == []
    assert results[API].pr_number == 1 and results[WEB].pr_number is None
    approved, rejected = results[API].approval, results[WEB].approval
    assert (approved.state, approved.by) == ("approved", "alice")
    assert (rejected.state, rejected.by) == ("rejected", "alice") and rejected.at
    assert results[DOCS].approval is None


def _sweep_when_due(seen: dict) -> threading.Thread:
    """Once the approval task waits past its deadline, run the scheduler's own HITL timeout
    sweep (SchedulerJobRunner.check_awaiting_input_timeouts) against the same database."""
    from types import SimpleNamespace

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = (
                    session.query(TaskInstance)
                    .filter(
                        TaskInstance.dag_id == "codybatch_job",
                        TaskInstance.state == "awaiting_input",
                    )
                    .first()
                )
                due = ti is not None and ti.trigger_timeout <= datetime.now(UTC)
                if ti is not None:
                    seen["timeout"] = ti.trigger_timeout
            if due:
                runner = SimpleNamespace(log=logging.getLogger("hitl-sweep"))
                SchedulerJobRunner.check_awaiting_input_timeouts(runner)
                seen["swept"] = True
                return
            time.sleep(0.5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_no_answer_before_the_timeout_publishes_nothing(
    airflow_home: Path,
    fake_github: FakeGitHub,
    codybatch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from codybatch.airflow.approval import approval_request

    monkeypatch.setenv("CODYBATCH_APPROVAL_TIMEOUT_HOURS", str(3 / 3600))  # three seconds
    fake_github.create_repo("acme/api", {"app.py": OLD})
    fake_github.create_repo("acme/web", {"web.py": OLD})
    fake_github.create_repo("acme/docs", {"index.md": "# docs\n"})
    dag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py")).get_dag("codybatch_job")
    seen: dict = {}
    thread = _sweep_when_due(seen)
    run = dag.test(run_conf=CONF)
    thread.join(5)
    assert seen.get("swept") and run.state == "success"
    results = _results(run, codybatch_home)
    assert fake_github.pulls("acme/api") == [] and fake_github.pulls("acme/web") == []
    for name in (API, WEB):
        part = results[name].approval
        assert (part.state, part.by) == ("timed_out", None) and part.at
        assert results[name].pr_number is None and results[name].has_patch
    assert "nothing published" in results[API].approval.note
    request = approval_request("codybatch_job", run.run_id)  # what the job page reads
    assert request.answered and request.by is None and request.chosen == ["Publish none"]
    assert not request.waiting
