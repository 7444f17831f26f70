"""Reading needs Airflow's permission to read runs of the job's DAG, on every route and list.

SimpleAuthManager lets every role read every DAG, so these tests make Airflow's own auth
manager instance refuse the viewer reading runs (GET, DagAccessEntity.RUN) of chosen DAGs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch.records import Job, JobStatus
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from tests.airflow.ui.seed import seed_campaign_run, seed_job
from tests.helpers import make_repo

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
BILLING = quote("github.com/acme/billing", safe="")
CAMPAIGN = "upgrade_legacy"
CAMPAIGN_DAG = f"codybatch_campaign__{CAMPAIGN}"
NOW = datetime.now(UTC).replace(microsecond=0)
REFUSED_JOB_DAG = "Forbidden: you may not read runs of the codybatch_job DAG"


@pytest.fixture
def denied(airflow_app, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """DAG ids whose runs the viewer may not read (the DAGs themselves stay readable)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    manager = get_auth_manager()
    original = manager.is_authorized_dag
    refused: set[str] = set()

    def is_authorized_dag(*, method, user, access_entity=None, details=None) -> bool:
        if (
            user.get_name() == "viewer"
            and method == "GET"
            and access_entity == DagAccessEntity.RUN
            and details is not None
            and details.id in refused
        ):
            return False
        return original(method=method, user=user, access_entity=access_entity, details=details)

    monkeypatch.setattr(manager, "is_authorized_dag", is_authorized_dag)
    return refused


@pytest.fixture(autouse=True)
def campaign_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A campaigns folder with one file, file_only (no runs)."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    example = ROOT / "include/campaigns/legacy-lib-upgrade.yaml"
    (folder / "file-only.yaml").write_text(example.read_text())
    monkeypatch.setenv("CODYBATCH_CAMPAIGNS_DIR", str(folder))
    return folder


@pytest.fixture
def admin_headers(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['admin']}"}


@pytest.fixture
def viewer(client, tokens):
    client.headers["Authorization"] = f"Bearer {tokens['viewer']}"
    yield client
    client.headers.pop("Authorization", None)


@pytest.fixture
def viewer_ui(client, tokens):
    """The viewer in a browser: the Airflow UI's `_token` cookie."""
    client.cookies.set("_token", tokens["viewer"])
    return client


def _plain_job(store, name: str, created_at: datetime, dag_id: str | None = None, **spec) -> Job:
    """A job as `codybatch run` writes it: no DAG (so codybatch_job's) unless dag_id is given."""
    data = {"name": name, "steps": ["true"], "repositories": ["acme/billing"], **spec}
    job = Job(
        job_id=f"job-cli-{name}",
        spec=JobSpec.parse(data, Settings.from_env()).to_dict(),
        dag_id=dag_id,
    )
    job.created_at = job.updated_at = created_at
    store.create_job(job)
    return store.update_job(job.job_id, status=JobStatus.COMPLETED)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [j["job_id"] for j in response.json()["jobs"]]


def test_every_read_of_a_job_is_refused_without_access_to_its_dag(
    viewer, admin_headers, store, denied
) -> None:
    job = seed_job(store)
    base = f"{API}/jobs/{job.job_id}"
    reads = [
        base,
        f"{base}?format=csv",
        f"{base}/repositories/{BILLING}",
        f"{base}/repositories/{BILLING}/diff",
        f"{base}/repositories/{BILLING}/claude-thread",
    ]
    for path in reads:
        assert viewer.get(path).status_code == 200, path

    denied.add("codybatch_job")
    for path in reads:
        response = viewer.get(path)
        assert response.status_code == 403, path
        assert response.json() == {
            "detail": f"{REFUSED_JOB_DAG}; ask an Airflow admin for access to it"
        }
        assert "Replaced one call" not in response.text and "oldFunction" not in response.text
    for path in reads:  # other users are unaffected
        assert viewer.get(path, headers=admin_headers).status_code == 200, path


def test_job_pages_show_a_clear_403(viewer_ui, store, denied) -> None:
    job = seed_job(store)
    denied.add("codybatch_job")
    base = f"/codybatch/jobs/{job.job_id}"
    for path in (
        base,
        f"{base}/live",
        f"{base}/diff/{BILLING}",
        f"{base}/thread/{BILLING}",
        f"{base}/patch/{BILLING}",
    ):
        page = viewer_ui.get(path)
        assert page.status_code == 403, path
        assert "<h1>Not allowed</h1>" in page.text
        assert REFUSED_JOB_DAG in page.text
        assert "Replaced one call" not in page.text and "oldFunction" not in page.text


def test_a_command_line_job_counts_as_codybatch_jobs(viewer, store, denied) -> None:
    job = _plain_job(store, "local", NOW)
    assert job.dag_id is None
    assert viewer.get(f"{API}/jobs/{job.job_id}").status_code == 200
    denied.add("codybatch_job")
    assert viewer.get(f"{API}/jobs/{job.job_id}").status_code == 403
    assert _ids(viewer.get(f"{API}/jobs")) == []


def test_lists_and_csv_leave_out_jobs_of_unreadable_dags(
    viewer, viewer_ui, admin_headers, store, denied
) -> None:
    dag_job = seed_job(store, name="from the DAG", created_at=NOW - timedelta(hours=3))
    cli_job = _plain_job(store, "cli", NOW - timedelta(hours=2))
    campaign = seed_campaign_run(
        store, CAMPAIGN, NOW - timedelta(hours=1), {"github.com/acme/billing": "open"}
    )
    everything = [campaign.job_id, cli_job.job_id, dag_job.job_id]
    assert _ids(viewer.get(f"{API}/jobs")) == everything

    denied.add("codybatch_job")
    assert _ids(viewer.get(f"{API}/jobs")) == [campaign.job_id]
    csv = viewer.get(f"{API}/jobs", params={"format": "csv"})
    assert csv.status_code == 200
    assert campaign.job_id in csv.text
    assert dag_job.job_id not in csv.text and cli_job.job_id not in csv.text
    page = viewer_ui.get("/codybatch/")
    assert page.status_code == 200
    assert campaign.job_id in page.text
    assert dag_job.job_id not in page.text and cli_job.job_id not in page.text
    assert _ids(viewer.get(f"{API}/jobs", headers=admin_headers)) == everything

    denied.clear()
    denied.add(CAMPAIGN_DAG)
    assert _ids(viewer.get(f"{API}/jobs")) == [cli_job.job_id, dag_job.job_id]


def test_pages_of_a_filtered_list_stay_full(viewer, store, denied) -> None:
    """Offsets count the jobs the user sees: hidden jobs leave no holes in the pages."""
    visible, hidden = [], []
    for hour in range(8):
        when = NOW - timedelta(hours=hour)
        if hour % 2:
            visible.append(seed_job(store, name=f"job {hour}", created_at=when).job_id)
        else:
            outcomes = {"github.com/acme/billing": "open"}
            hidden.append(seed_campaign_run(store, CAMPAIGN, when, outcomes).job_id)
    denied.add(CAMPAIGN_DAG)

    pages, offset = [], 0
    while offset is not None:
        data = viewer.get(f"{API}/jobs", params={"limit": 3, "offset": offset}).json()
        pages.append([j["job_id"] for j in data["jobs"]])
        offset = data["next_offset"]
    assert pages == [visible[:3], visible[3:]]
    by_cursor, cursor = [], None
    while True:
        data = viewer.get(f"{API}/jobs", params={"limit": 3, "cursor": cursor}).json()
        by_cursor.append([j["job_id"] for j in data["jobs"]])
        if not (cursor := data["next_cursor"]):
            break
    assert by_cursor == pages  # a cursor after a visible job skips the hidden ones too
    running = viewer.get(f"{API}/jobs", params={"status": "running"}).json()
    assert running["jobs"] == [] and running["next_offset"] is None


def test_campaigns_of_unreadable_dags_are_hidden_and_refused(
    viewer, viewer_ui, admin_headers, store, denied
) -> None:
    seed_campaign_run(store, CAMPAIGN, NOW, {"github.com/acme/billing": "open"})
    seed_campaign_run(store, "other_campaign", NOW, {"github.com/acme/billing": "open"})

    def names() -> list[str]:
        response = viewer.get(f"{API}/campaigns")
        assert response.status_code == 200, response.text
        return sorted(c["name"] for c in response.json()["campaigns"])

    assert names() == ["file_only", "other_campaign", CAMPAIGN]

    denied.update([CAMPAIGN_DAG, "codybatch_campaign__file_only"])
    assert names() == ["other_campaign"]
    page = viewer_ui.get("/codybatch/campaigns")
    assert page.status_code == 200
    assert "other_campaign" in page.text
    assert CAMPAIGN not in page.text and "file_only" not in page.text

    refusal = f"Forbidden: you may not read runs of the {CAMPAIGN_DAG} DAG"
    response = viewer.get(f"{API}/campaigns/{CAMPAIGN}")
    assert response.status_code == 403 and refusal in response.json()["detail"]
    # A campaign that does not exist is refused the same way: its name reveals nothing.
    denied.add("codybatch_campaign__nothing_here")
    assert viewer.get(f"{API}/campaigns/nothing_here").status_code == 403
    page = viewer_ui.get(f"/codybatch/campaigns/{CAMPAIGN}")
    assert page.status_code == 403 and refusal in page.text
    assert viewer.get(f"{API}/campaigns/{CAMPAIGN}", headers=admin_headers).status_code == 200


def test_burndown_counts_only_runs_the_user_may_read(viewer, store, denied) -> None:
    run = seed_campaign_run(store, CAMPAIGN, NOW - timedelta(days=7), {"github.com/acme/a": "open"})
    cli = _plain_job(store, "by-hand", NOW, campaign=CAMPAIGN)  # the campaign, run by hand

    def burndown() -> list[str]:
        response = viewer.get(f"{API}/campaigns/{CAMPAIGN}")
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["runs"] == len(data["burndown"])
        return [p["job_id"] for p in data["burndown"]]

    assert burndown() == [run.job_id, cli.job_id]
    denied.add("codybatch_job")
    assert burndown() == [run.job_id]
    listed = viewer.get(f"{API}/campaigns").json()["campaigns"]
    assert [(c["name"], c["runs"]) for c in listed if c["name"] == CAMPAIGN] == [(CAMPAIGN, 1)]


def test_results_tab_refuses_a_dag_the_user_may_not_read(viewer_ui, store, denied) -> None:
    job = seed_job(store, run_id="manual__seen")
    assert viewer_ui.get("/codybatch/runs/codybatch_job/manual__nothing").status_code == 200
    assert viewer_ui.get("/codybatch/runs/codybatch_job/manual__seen").status_code == 303

    denied.add("codybatch_job")
    for run_id in ("manual__nothing", "manual__seen"):
        page = viewer_ui.get(f"/codybatch/runs/codybatch_job/{run_id}")
        assert page.status_code == 403
        assert REFUSED_JOB_DAG in page.text
        assert job.job_id not in page.text and "queued" not in page.text
    assert viewer_ui.get(f"/codybatch/runs/{CAMPAIGN_DAG}/manual__x").status_code == 200


def test_repositories_come_only_from_readable_jobs(
    viewer, tmp_path: Path, store, denied, monkeypatch
) -> None:
    shown, hidden = (
        str(make_repo(tmp_path / name, {"app.py": "print('hi')\n"})) for name in ("shown", "hidden")
    )
    monkeypatch.setenv("CODYBATCH_ALLOWED_REPOSITORIES", f"{tmp_path}/*")
    seed_job(store, name="readable", repositories=(hidden, "github.com/acme/web"))
    _plain_job(store, "campaign", NOW, dag_id=CAMPAIGN_DAG, repositories=[shown])
    assert viewer.get(f"{API}/repositories").json()["repositories"] == sorted([shown, hidden])

    denied.add("codybatch_job")
    assert viewer.get(f"{API}/repositories").json()["repositories"] == [shown]
