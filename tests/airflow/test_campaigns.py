"""Campaign files -> one scheduled DAG each; a broken file is an import error of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.airflow.campaigns import (
    CampaignError,
    load_campaign,
    sync_campaign_stubs,
)
from codybatch.records import RepositoryStatus, job_id_for_run
from codybatch.store.local import LocalStore

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


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_valid_campaign_loads(tmp_path: Path, example_repos: list[Path], codybatch_home) -> None:
    path = _write(tmp_path / "c", "weekly-cleanup.yaml", GOOD.format(repo=example_repos[1]))
    campaign = load_campaign(path)

    assert campaign.name == "weekly_cleanup"
    assert campaign.dag_id == "codybatch_campaign__weekly_cleanup"
    assert campaign.schedule == "0 6 * * 1"
    assert campaign.spec.campaign == "weekly_cleanup"
    assert campaign.spec.repositories[0] == f"{codybatch_home}/examples/billing-service"


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
        ("schedule: '@daily'\nname: x\nsteps: [true]\nrepositories: []\n", "repositories"),
        ("schedule: '@daily'\nsteps: [true]\nrepositories: [a/b]\n", "name: is required"),
        ("- just\n- a list\n", "must be a mapping"),
        ("schedule: [unclosed\n", "not readable YAML"),
    ],
)
def test_invalid_campaign_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "broken.yaml", text)
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
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


@pytest.mark.airflow
def test_campaign_dag_runs_the_campaign_spec(
    airflow_home: Path, dags_folder: Path, tmp_path: Path, example_repos: list[Path], codybatch_home
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    _write(tmp_path / "campaigns", "weekly.yaml", GOOD.format(repo=example_repos[2]))
    sync_campaign_stubs()
    dag = DagBag(dag_folder=str(dags_folder)).get_dag("codybatch_campaign__weekly")

    run = dag.test()  # a scheduled run: no conf, the campaign's spec from the params' defaults

    store = LocalStore(codybatch_home)
    job = store.get_job(job_id_for_run(dag.dag_id, run.run_id))
    assert job.spec["campaign"] == "weekly" and job.spec["name"] == "Weekly cleanup"
    results = {Path(r.repository).name: r for r in store.list_results(job.job_id)}
    assert results["billing-service"].status == RepositoryStatus.COMPLETED
    assert results["billing-service"].were_changes_necessary is True
    assert results["docs-site"].were_changes_necessary is False


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
    assert not LocalStore(codybatch_home).list_jobs()
