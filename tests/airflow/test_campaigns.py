"""Campaign files -> one scheduled DAG each; a broken file is an import error of its own."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import pytest

from codybatch.airflow.campaigns import (
    CampaignError,
    load_campaign,
    sync_campaign_stubs,
)
from codybatch.airflow.launch import build_campaign_dag
from codybatch.fleet_records import FleetStatus
from codybatch.records import JobStatus
from codybatch.settings import Settings
from codybatch.store.local import LocalStore
from tests.airflow.jobruns import job_runs, run_job
from tests.fakes.github_server import fake_github
from tests.helpers import commit_all, git, make_repo

__all__ = ["fake_github"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def example_repos(codybatch_home: Path) -> list[Path]:
    """The demo's repositories where campaigns find them: under CODYBATCH_HOME."""
    from codybatch.demo import make_examples

    return make_examples(codybatch_home / "examples")


GOOD = """\
schedule: "0 6 * * 1"
start_date: 2026-01-01
name: Weekly cleanup
steps: ["sed -i s/oldFunction/newFunction/g src/invoice.js"]
repositories: ["${{CODYBATCH_HOME}}/examples/billing-service", "{repo}"]
"""


BASE = "schedule: '@daily'\nname: x\nsteps: [true]\n"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_a_budget_makes_jobs_small_enough_to_afford(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "thrifty.yaml",
        "schedule: '@daily'\nname: x\nsteps: ['true']\nrepositories: [a/b, c/d]\nmax_usd: 2\n"
        "budget: {per_run_usd: 5}\n"
        "rollout: {rate: 100/hour}\n",
    )
    assert (
        load_campaign(path, Settings.from_env()).batch_size == 2
    )  # two repositories may cost 4 of the 5 USD


def test_valid_campaign_loads(tmp_path: Path, example_repos: list[Path], codybatch_home) -> None:
    path = _write(tmp_path / "c", "weekly-cleanup.yaml", GOOD.format(repo=example_repos[1]))
    campaign = load_campaign(path, Settings.from_env())

    assert campaign.name == "weekly_cleanup"
    assert campaign.dag_id == "codybatch_campaign__weekly_cleanup"
    assert campaign.schedule == "0 6 * * 1"
    assert campaign.spec.campaign == "weekly_cleanup"
    assert campaign.spec.repositories[0] == f"{codybatch_home}/examples/billing-service"


@pytest.mark.parametrize(("line", "paused"), [("", True), ("paused: false\n", False)])
def test_a_campaign_dag_starts_paused_unless_its_file_says_not(
    tmp_path: Path, example_repos: list[Path], line: str, paused: bool
) -> None:
    path = _write(tmp_path / "c", "weekly.yaml", line + GOOD.format(repo=example_repos[1]))
    campaign = load_campaign(path, Settings.from_env())
    dag = build_campaign_dag(campaign, path.name)

    assert campaign.paused is paused
    assert dag.is_paused_upon_creation is paused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schedule: 'every monday'\nname: x\nsteps: [true]\nrepositories: [a/b]\n", "schedule:"),
        ("schedule: '@fortnightly'\nname: x\nsteps: [true]\nrepositories: [a/b]\n", "preset"),
        ("name: x\nsteps: [true]\nrepositories: [a/b]\n", "schedule: is required"),
        ("schedule: '@daily'\nstart_date: someday\nname: x\nrepositories: [a/b]\n", "start_date"),
        (
            "schedule: '@daily'\nenabled: maybe\nname: x\nsteps: [true]\nrepositories: [a/b]\n",
            "enabled",
        ),
        (BASE + "paused: later\nrepositories: [a/b]\n", "paused: must be true or false"),
        ("schedule: '@daily'\nname: x\nsteps: [true]\nrepositories: []\n", "repositories"),
        ("schedule: '@daily'\nsteps: [true]\nrepositories: [a/b]\n", "name: is required"),
        ("- just\n- a list\n", "must be a mapping"),
        (BASE, "repositories: is required unless select"),
        (
            BASE + "repositories: 'acme/a, acme/b'\n",
            "repositories: must be a list of repositories, one entry each",
        ),
        (
            BASE + "repositories: [a/b]\nrollout: {rate: 10/hr}\n",
            "rollout.rate: '10/hr' is not a rate",
        ),
        (
            BASE + "repositories: [a/b]\nbudget: {total_usd: 1}\n",
            "budget.total_usd: is 1 USD, below one repository's limit (max_usd 2.0)",
        ),
        (
            BASE + "select: {org: acme, stars: 5}\n",
            "select.stars: is not known",
        ),
        (
            BASE + "repositories: [a/b, c/d, e/f, g/h, i/j, k/l, a/b]\n",
            "repositories[6]: 'a/b' is listed already (repositories[0])",
        ),
        (
            BASE + "repositories: [a/b, c/d, e/f, g/h, i/j, 'k l']\n",
            "repositories[5]:",
        ),
        ("schedule: [unclosed\n", "not readable YAML"),
    ],
)
def test_invalid_campaign_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "broken.yaml", text)
    with pytest.raises(CampaignError) as info:
        load_campaign(path, Settings.from_env())
    assert str(path) in str(info.value)
    assert expected in str(info.value)


@pytest.fixture
def dags_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dags folder holding the real DAG files, with its own campaigns folder."""
    folder = tmp_path / "dags"
    folder.mkdir()
    for dag_file in (ROOT / "dags").glob("*.py"):
        (folder / dag_file.name).symlink_to(dag_file)
    import airflow.settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    monkeypatch.setenv("CODYBATCH_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    return folder


@pytest.mark.airflow
def test_broken_campaign_is_an_import_error_of_its_own(
    airflow_home: Path, dags_folder: Path, tmp_path: Path, example_repos: list[Path], codybatch_home
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    campaigns = tmp_path / "campaigns"
    _write(campaigns, "good-one.yaml", GOOD.format(repo=example_repos[1]))
    _write(campaigns, "bad-one.yaml", GOOD.format(repo=example_repos[1]).replace("0 6", "99 6"))
    _write(campaigns, "off.yaml", "enabled: false\n" + GOOD.format(repo=example_repos[2]))
    stubs = sync_campaign_stubs()
    assert sorted(p.name for p in stubs) == ["bad_one.py", "good_one.py", "off.py"]

    bag = DagBag(dag_folder=str(dags_folder))

    assert set(bag.dag_ids) == {
        "codybatch_job",
        "codybatch_job_sweep",
        "codybatch_pr_tracking",
        "codybatch_campaign__good_one",
    }
    assert list(bag.import_errors) == [str(dags_folder / "campaigns" / "bad_one.py")] or [
        Path(p).name for p in bag.import_errors
    ] == ["bad_one.py"]
    (error,) = bag.import_errors.values()
    assert "bad-one.yaml" in error and "schedule:" in error and "'99 6 * * 1'" in error

    # Removing a campaign file removes its DAG file too.
    (campaigns / "bad-one.yaml").unlink()
    assert [p.name for p in sync_campaign_stubs()] == ["good_one.py", "off.py"]
    assert not (dags_folder / "campaigns" / "bad_one.py").exists()


FLEET = """\
schedule: "@weekly"
name: Fleet cleanup
steps: ["grep -rl oldFunction . | xargs -r sed -i s/oldFunction/newFunction/g"]
rollout: {{rate: 7200/hour, max_concurrent_jobs: 10}}
repositories:
{repos}
"""


@pytest.mark.airflow
def test_a_campaign_launches_paced_jobs_of_five_and_skips_done_ones_next_run(
    airflow_home: Path, dags_folder: Path, tmp_path: Path, codybatch_home: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    repos = [
        make_repo(
            tmp_path / "fleet" / f"r{i:02d}", {"a.js": "oldFunction()\n" if i % 2 else "ok\n"}
        )
        for i in range(12)
    ]
    listing = "\n".join(f"  - {r}" for r in repos)
    _write(tmp_path / "campaigns", "fleet.yaml", FLEET.format(repos=listing))
    sync_campaign_stubs()
    bag = DagBag(dag_folder=str(dags_folder))
    assert bag.import_errors == {}
    dag = bag.get_dag("codybatch_campaign__fleet")
    store = LocalStore(codybatch_home)

    first = dag.test()
    launched = job_runs("fleet")
    # Jobs of five (in whatever order the scheduler picks the launches).
    assert sorted(len(r.conf["repositories"]) for r in launched) == [2, 5, 5]
    assert {r.conf["campaign"] for r in launched} == {"fleet"}
    assert all(r.run_id.startswith("campaign__fleet__") for r in launched)
    entries = store.fleet("fleet")
    assert {e.status for e in entries} == {FleetStatus.LAUNCHED}
    # 7200/hour: a job of k repositories leaves k/2 s before the next one.
    state, _ = store.get_campaign_state("fleet")
    launches = sorted(state["launches"], key=lambda r: r["at"])
    for a, b in itertools.pairwise(launches):
        gap = datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])
        assert gap.total_seconds() >= a["size"] / 2

    # Run again while the jobs are queued: nothing is launched twice.
    dag.test()
    assert len(job_runs("fleet")) == 3

    for run in launched:
        run_job(bag.get_dag("codybatch_job"), run)
    entries = {Path(e.repository).name: e for e in store.fleet("fleet")}
    assert {e.status for e in entries.values()} == {FleetStatus.COMPLETED}
    assert entries["r01"].base_revision == local_head(repos[1])
    jobs_before = len(store.list_jobs(limit=100))

    third = dag.test()
    assert third.state == first.state == "success"
    assert len(job_runs("fleet")) == 3 and len(store.list_jobs(limit=100)) == jobs_before
    # One repository moves on: only it runs again.
    (repos[4] / "b.js").write_text("oldFunction(2)\n")
    commit_all(repos[4])
    dag.test()
    (fourth,) = job_runs("fleet")[3:]
    assert fourth.conf["repositories"] == [str(repos[4])]


def local_head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.airflow
def test_a_search_that_selects_nothing_is_an_import_error_of_that_file(
    airflow_home: Path, dags_folder: Path, tmp_path: Path, fake_github, codybatch_home: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    fake_github.create_repo("acme/api", topics=["python"])
    _write(
        tmp_path / "campaigns",
        "nothing.yaml",
        "schedule: '@daily'\nname: x\nprompt: Fix it\ncreate_pull_requests: true\n"
        "select: {org: acme, topic: cobol}\n",
    )
    _write(
        tmp_path / "campaigns",
        "python.yaml",
        "schedule: '@daily'\nname: y\nprompt: Fix it\ncreate_pull_requests: true\n"
        "select: {org: acme, topic: python}\n",
    )
    sync_campaign_stubs()
    bag = DagBag(dag_folder=str(dags_folder))
    assert "codybatch_campaign__python" in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert "nothing.yaml" in error and "select: selects no repository" in error


@pytest.mark.airflow
def test_two_files_with_one_dag_id_are_reported(
    airflow_home: Path, dags_folder: Path, tmp_path: Path, example_repos: list[Path], codybatch_home
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    campaigns = tmp_path / "campaigns"
    _write(campaigns, "weekly-fix.yaml", GOOD.format(repo=example_repos[1]))
    _write(campaigns, "weekly_fix.yaml", GOOD.format(repo=example_repos[2]))
    sync_campaign_stubs()
    bag = DagBag(dag_folder=str(dags_folder))

    assert "codybatch_campaign__weekly_fix" in bag.dag_ids
    assert bag.get_dag("codybatch_campaign__weekly_fix").max_active_runs == 1
    (error,) = bag.import_errors.values()
    assert "weekly_fix.yaml" in error and "rename one of the files" in error


@pytest.mark.airflow
def test_a_one_off_job_cannot_claim_a_campaign(
    airflow_home: Path, demo_conf: dict, codybatch_home: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "codybatch_job.py")).get_dag("codybatch_job")
    run = dag.test(run_conf={**demo_conf, "campaign": "legacy_lib_upgrade"})
    assert run.state == "failed"
    # Refused at validate: recorded as a FAILED job that says why, not run as a campaign's.
    [job] = LocalStore(codybatch_home).list_jobs()
    assert job.status == JobStatus.FAILED and job.repositories == []
    assert job.spec["errors"] == [
        {"field": "campaign", "message": "is set by a campaign's own runs only: remove it"}
    ]
