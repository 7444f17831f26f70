"""The campaign page and API at fleet scale: every repository, filters, pages, CSV, retry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codybatch import fleet
from codybatch.fleet_records import ErrorClass, FleetEntry, FleetStatus
from tests.airflow.ui.seed import XSS, csrf_of

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN = """\
schedule: "@weekly"
name: Fleet upgrade
steps: ["true"]
repositories: [{repos}]
rollout: {{rate: 10/hour}}
budget: {{per_run_usd: 50}}
"""


@pytest.fixture
def fleet_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store) -> list[str]:
    """A campaign of 120 repositories: 30 failed (clone, verify), 10 merged, the rest done."""
    keys = [f"github.com/acme/r{i:03d}" for i in range(120)]
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "fleet.yaml").write_text(CAMPAIGN.format(repos=", ".join(keys)))
    monkeypatch.setenv("CODYBATCH_CAMPAIGNS_DIR", str(folder))
    entries = []
    for i, key in enumerate(keys):
        entry = FleetEntry("fleet", key, status=FleetStatus.COMPLETED, usd=0.25, jobs=1)
        entry.job_id, entry.pr_url, entry.pr_number = f"job-{i // 5}", f"https://x/{i}", i
        entry.pr_state = "open"
        if i % 4 == 0:
            entry.status, entry.pr_state = FleetStatus.FAILED, None
            entry.error_class = ErrorClass.CLONE_FAILED if i % 8 else ErrorClass.VERIFY_FAILED
            entry.error = f"git clone failed {XSS}"
        elif i % 12 == 1:
            entry.pr_state, entry.done_reason = "merged", "merged"
        entries.append(entry)
    store.put_fleet(entries)
    fleet.snapshot(store, "fleet", "scheduled__2026-01-01")
    return keys


def test_the_api_pages_filters_and_rolls_up_the_fleet(admin, fleet_campaign, store) -> None:
    first = admin.get(f"{API}/campaigns/fleet/repositories", params={"limit": 50}).json()
    assert [r["repository"] for r in first["repositories"]] == fleet_campaign[:50]
    assert first["next_cursor"] == fleet_campaign[49]
    rest = admin.get(
        f"{API}/campaigns/fleet/repositories", params={"cursor": first["next_cursor"], "limit": 200}
    ).json()
    assert len(rest["repositories"]) == 70 and rest["next_cursor"] is None
    counts = first["counts"]
    assert counts["members"] == 120 and counts["by_status"] == {"COMPLETED": 90, "FAILED": 30}
    assert counts["by_error"] == {"clone_failed": 15, "verify_failed": 15}
    assert counts["prs_merged"] == 10 and counts["usd"] == 30.0

    failed = admin.get(
        f"{API}/campaigns/fleet/repositories", params={"error_class": "verify_failed"}
    ).json()["repositories"]
    assert [r["repository"] for r in failed] == fleet_campaign[0:120:8]
    bad = admin.get(f"{API}/campaigns/fleet/repositories", params={"status": "BROKEN"})
    assert bad.status_code == 400 and "LAUNCHED" in bad.text

    csv = admin.get(f"{API}/campaigns/fleet/repositories", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert len(lines) == 121 and lines[0].startswith("repository,member,status,error_class")

    campaign = admin.get(f"{API}/campaigns/fleet").json()
    assert campaign["fleet"]["members"] == 120 and campaign["rollout"]["rate"] == "10/hour"
    (point,) = campaign["burndown"]
    assert point["needing_change"] == 110 and point["prs_merged"] == 10


def test_the_page_lists_every_repository_with_filters_and_pages(ui, fleet_campaign) -> None:
    page = ui.get("/codybatch/campaigns/fleet")
    assert page.status_code == 200
    assert XSS not in page.text  # errors come from repositories: escaped
    rows = re.findall(r"<td>github\.com/acme/r\d{3}", page.text)
    assert len(rows) == 50
    assert "120 repositories · 90 completed · 30 failed" in page.text
    assert "Retry failed (30)" in page.text
    assert "/api/v1/campaigns/fleet/repositories?format=csv" in page.text
    assert re.search(r'href="\?cursor=github\.com%2Facme%2Fr049"', page.text)
    filtered = ui.get("/codybatch/campaigns/fleet", params={"error_class": "clone_failed"})
    assert len(re.findall(r"<td>github\.com/acme/r\d{3}", filtered.text)) == 15
    assert "10/hour" in page.text and "budget 50.0 USD a run" in page.text


def test_retry_failed_from_the_api_marks_them_and_starts_a_campaign_run(
    client, tokens, fleet_campaign, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.settings
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from codybatch.airflow.campaigns import sync_campaign_stubs
    from codybatch.airflow.ui.runs import run_state

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "codybatch_campaigns.py").symlink_to(ROOT / "dags/codybatch_campaigns.py")
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    sync_campaign_stubs()
    sync_bag_to_db(DagBag(dag_folder=str(folder)), "dags-folder", None)

    client.cookies.set("_token", tokens["admin"])
    csrf = {"X-CSRF-Token": csrf_of(client)}
    nothing = client.post(f"{API}/campaigns/fleet/retry", json={}, headers=csrf)
    assert nothing.status_code == 400
    unknown = client.post(
        f"{API}/campaigns/fleet/retry", json={"repositories": ["acme/zzz"]}, headers=csrf
    )
    assert unknown.status_code == 404 and "not a repository of campaign fleet" in unknown.text
    done = client.post(f"{API}/campaigns/fleet/retry", json={"failed": True}, headers=csrf).json()
    assert done["marked"] == fleet_campaign[0:120:4]
    assert run_state("codybatch_campaign__fleet", done["run_id"]) == "queued"
    assert store.get_fleet("fleet", fleet_campaign[0]).retry
    assert not store.get_fleet("fleet", fleet_campaign[1]).retry

    client.cookies.clear()
    client.headers["Authorization"] = f"Bearer {tokens['viewer']}"  # no CSRF for a Bearer
    denied = client.post(f"{API}/campaigns/fleet/retry", json={"failed": True})
    client.headers.pop("Authorization")
    assert denied.status_code == 403


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client
