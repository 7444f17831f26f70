"""The codybatch_pr_tracking DAG through a real Airflow: refresh, merge when green, follow up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.anthropic_server import create, fake_anthropic, finish, reply
from tests.fakes.github_server import fake_github
from tests.github.test_followup import API, BRANCH, env, start

__all__ = ["env", "fake_anthropic", "fake_github"]
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.airflow


def test_tracking_refreshes_refuses_the_red_merge_and_follows_up(env, airflow_home: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    fake, claude, _, store = env
    head = start(env, merge="when_green")
    fake.add_check_run("acme/api", head, "ci/test", "completed", "failure", summary="no changelog")
    fake.add_review("acme/api", 1, "alice", "APPROVED")
    claude.script(
        reply(create("/repo/CHANGELOG.md", "- use newFunction\n")),
        reply(finish(True, "Added the changelog entry.", "Changelog")),
    )
    bag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_pr_tracking.py"))
    assert bag.import_errors == {}
    run = bag.get_dag("codybatch_pr_tracking").test()
    assert run.state == "success"

    result = store.get_result("job-f", API)
    assert result.merge.reason == "required check ci/test failed"
    [fix] = result.fix_rounds
    assert (fix.trigger, fix.outcome) == ("failing_check", "pushed")
    assert fake.file_at("acme/api", BRANCH, "CHANGELOG.md") == "- use newFunction\n"
    assert not fake.pull("acme/api", 1).merged  # the new head has no passing check yet
