"""A campaign against the fake GitHub: re-runs reconcile on the stable branch; tracking."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.airflow.campaigns import sync_campaign_stubs
from codybatch.fleet_records import FleetStatus
from codybatch.records import RepositoryStatus, job_id_for_run
from codybatch.store.local import LocalStore
from codybatch.sweep import track_pull_requests
from tests.airflow.jobruns import job_runs, run_job
from tests.fakes.github_server import FakeGitHub, fake_github

__all__ = ["fake_github"]
pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]

OLD = "from lib import oldFunction\n\nprint(oldFunction(1))\n"
CAMPAIGN = """\
schedule: "@weekly"
name: Retire oldFunction
description: oldFunction is deprecated.
steps: ["grep -rl oldFunction . --include=*.py | xargs -r sed -i s/oldFunction/newFunction/g"]
repositories: [acme/api, acme/web, acme/docs]
create_pull_requests: true
"""


@pytest.fixture
def campaign_dag(
    airflow_home: Path,
    fake_github: FakeGitHub,
    codybatch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    import airflow.settings
    from airflow.dag_processing.dagbag import DagBag

    fake_github.create_repo("acme/api", {"app.py": OLD})
    fake_github.create_repo("acme/web", {"web.py": OLD})
    fake_github.create_repo("acme/docs", {"index.md": "# docs\n"})
    folder = tmp_path / "dags"
    folder.mkdir()
    for dag_file in ("codybatch_campaigns.py", "codybatch_job.py"):
        (folder / dag_file).symlink_to(ROOT / "dags" / dag_file)
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "retire.yaml").write_text(CAMPAIGN)
    monkeypatch.setenv("CODYBATCH_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    sync_campaign_stubs()
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag.get_dag("codybatch_campaign__retire")


def _run(dag, codybatch_home: Path) -> dict[str, object]:
    """One campaign run, then the job runs it launched; the results of those jobs by repo."""
    from datetime import UTC, datetime

    before = {r.run_id for r in job_runs("retire")}
    dag.test(logical_date=datetime.now(UTC))
    store = LocalStore(codybatch_home)
    results = {}
    for run in job_runs("retire"):
        if run.run_id in before:
            continue
        run_job(job_dag(), run)
        job_id = job_id_for_run("codybatch_job", run.run_id)
        results |= {r.repository.split("/", 1)[1]: r for r in store.list_results(job_id)}
    return results


def job_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py")).get_dag("codybatch_job")


def test_campaign_reconciles_its_pull_requests_run_after_run(
    campaign_dag, fake_github: FakeGitHub, codybatch_home: Path
) -> None:
    first = _run(campaign_dag, codybatch_home)
    assert {k: r.status for k, r in first.items()} == {
        "acme/api": RepositoryStatus.COMPLETED,
        "acme/web": RepositoryStatus.COMPLETED,
        "acme/docs": RepositoryStatus.COMPLETED,
    }
    api_pr, web_pr = first["acme/api"].pr_number, first["acme/web"].pr_number
    assert api_pr and web_pr and first["acme/docs"].pr_number is None
    assert [p.number for p in fake_github.pulls("acme/api")] == [api_pr]
    assert fake_github.pulls("acme/docs") == []
    branch_before = fake_github.branch_sha("acme/api", "codybatch/retire-oldfunction")

    # Meanwhile people change main: api gets a second call (a new diff), web is fixed by hand.
    fake_github.commit_files("acme/api", {"more.py": "from lib import oldFunction\n"})
    fake_github.commit_files("acme/web", {"web.py": "from lib import newFunction\n"})
    second = _run(campaign_dag, codybatch_home)

    assert set(second) == {"acme/api", "acme/web"}  # docs: same base, same spec, not cloned
    api = second["acme/api"]
    assert api.pr_number == api_pr and api.publishing.action == "updated"
    assert [p.number for p in fake_github.pulls("acme/api")] == [api_pr]  # never a second PR
    assert fake_github.branch_sha("acme/api", "codybatch/retire-oldfunction") != branch_before
    assert "newFunction" in fake_github.file_at(
        "acme/api", "codybatch/retire-oldfunction", "more.py"
    )
    web = second["acme/web"]
    assert web.were_changes_necessary is False and web.pr_state == "closed"
    assert web.publishing.action == "closed"
    (web_pull,) = fake_github.pulls("acme/web")
    assert web_pull.state == "closed" and web_pull.comments  # closed with a comment saying why
    docs = LocalStore(codybatch_home).get_fleet("retire", "github.com/acme/docs")
    assert docs.status == FleetStatus.COMPLETED and docs.jobs == 1


def test_tracking_sees_a_merge_and_the_campaign_then_leaves_the_repository_alone(
    campaign_dag, fake_github: FakeGitHub, codybatch_home: Path
) -> None:
    from codybatch.settings import Settings

    first = _run(campaign_dag, codybatch_home)
    api_pr = first["acme/api"].pr_number
    head = fake_github.branch_sha("acme/api", "codybatch/retire-oldfunction")
    fake_github.set_commit_status("acme/api", head, "ci/test", "success")
    fake_github.add_review("acme/api", api_pr, "alice", "APPROVED")

    store = LocalStore(codybatch_home)
    settings = Settings.from_env()
    tracked = {t.repository: t for t in track_pull_requests(store, settings)}
    api = tracked["github.com/acme/api"]
    assert (api.after, api.checks, api.review) == ("open", "success", "approved")
    assert tracked["github.com/acme/web"].checks == "none"

    fake_github.merge_pull("acme/api", api_pr)
    tracked = {t.repository: t for t in track_pull_requests(store, settings)}
    assert tracked["github.com/acme/api"].after == "merged"
    stored = store.get_result(first["acme/api"].job_id, "github.com/acme/api")
    assert stored.pr_state == "merged" and stored.tracking.state == "merged"
    # The fleet view knows at once, not only at the campaign's next run.
    entry = store.get_fleet("retire", "github.com/acme/api")
    assert (entry.pr_state, entry.done_reason) == ("merged", "merged")
    # A merged PR is no longer tracked.
    assert "github.com/acme/api" not in {t.repository for t in track_pull_requests(store, settings)}

    # main now calls oldFunction again, yet the campaign is done with acme/api.
    fake_github.commit_files("acme/api", {"again.py": "from lib import oldFunction\n"})
    branch = fake_github.branch_sha("acme/api", "codybatch/retire-oldfunction")
    assert _run(campaign_dag, codybatch_home) == {}  # nothing launched, nothing cloned
    entry = store.get_fleet("retire", "github.com/acme/api")
    assert entry.pr_state == "merged" and entry.done_reason == "merged"
    assert fake_github.branch_sha("acme/api", "codybatch/retire-oldfunction") == branch
    assert [p.state for p in fake_github.pulls("acme/api")] == ["closed"]  # not reopened
