"""Campaigns in the plugin: files, runs, the burndown (JSON and SVG), PR tracking on the pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch.airflow.ui.chart import burndown_chart
from codybatch.airflow.ui.runs import paused_dags
from tests.airflow.ui.seed import XSS, seed_campaign_run, seed_job

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
BILLING, WEB, DOCS = "github.com/acme/billing", "github.com/acme/web", "github.com/acme/docs"
DAY1 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

VALID = f"""\
schedule: "0 6 * * 1"
start_date: 2026-03-01
enabled: true
name: "Upgrade legacy-lib {XSS}"
steps: ["sed -i s/oldFunction/newFunction/g *.js"]
repositories: [acme/billing, acme/web, acme/docs]
create_pull_requests: true
"""


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


@pytest.fixture
def campaigns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A campaigns folder: one valid file, one disabled, one broken."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "upgrade-legacy.yaml").write_text(VALID)
    (folder / "paused.yml").write_text(VALID.replace("enabled: true", "enabled: false"))
    (folder / "broken.yaml").write_text("schedule: every tuesday\nname: x\n")
    monkeypatch.setenv("CODYBATCH_CAMPAIGNS_DIR", str(folder))
    return folder


def _three_runs(store, campaign: str = "upgrade_legacy") -> list:
    """Three weekly runs: the PRs get merged one by one, the docs need no change any more."""
    return [
        seed_campaign_run(store, campaign, DAY1, {BILLING: "open", WEB: "open", DOCS: "patch"}),
        seed_campaign_run(
            store,
            campaign,
            DAY1 + timedelta(days=7),
            {BILLING: "merged", WEB: "open", DOCS: "clean"},
        ),
        seed_campaign_run(
            store, campaign, DAY1 + timedelta(days=14), {BILLING: "merged", WEB: "merged"}
        ),
    ]


def test_campaigns_api_lists_files_with_their_runs_and_errors(admin, store, campaigns) -> None:
    runs = _three_runs(store)
    seed_campaign_run(store, "retired", DAY1, {BILLING: "open"})  # its file is gone
    seed_job(store)  # not a campaign

    data = admin.get(f"{API}/campaigns").json()["campaigns"]
    by_name = {c["name"]: c for c in data}
    assert list(by_name) == ["broken", "paused", "upgrade_legacy", "retired"]

    good = by_name["upgrade_legacy"]
    assert good["dag_id"] == "codybatch_campaign__upgrade_legacy"
    assert good["file"] == "upgrade-legacy.yaml"
    assert good["schedule"] == "0 6 * * 1" and good["enabled"] is True
    assert good["title"] == f"Upgrade legacy-lib {XSS}"
    assert good["repositories"] == [BILLING, WEB, DOCS]
    assert good["runs"] == 3 and good["error"] is None
    assert good["latest"] == {
        "job_id": runs[-1].job_id,
        "status": "COMPLETED",
        "created_at": runs[-1].created_at.isoformat(),
    }
    assert by_name["paused"]["enabled"] is False and by_name["paused"]["runs"] == 0

    broken = by_name["broken"]
    assert broken["dag_id"] == "codybatch_campaign__broken" and broken["runs"] == 0
    assert "broken.yaml" in broken["error"] and "schedule" in broken["error"]
    assert broken["enabled"] is None and broken["latest"] is None

    assert by_name["retired"]["file"] is None and by_name["retired"]["runs"] == 1


def test_campaign_api_has_the_burndown_points(admin, store, campaigns) -> None:
    runs = _three_runs(store)
    data = admin.get(f"{API}/campaigns/upgrade_legacy").json()
    assert data["name"] == "upgrade_legacy" and data["runs"] == 3
    points = [
        {k: p[k] for k in ("job_id", "needing_change", "prs_open", "prs_merged", "done")}
        for p in data["burndown"]
    ]
    assert points == [
        {"job_id": runs[0].job_id, "needing_change": 3, "prs_open": 2, "prs_merged": 0, "done": 0},
        {"job_id": runs[1].job_id, "needing_change": 1, "prs_open": 1, "prs_merged": 1, "done": 2},
        {"job_id": runs[2].job_id, "needing_change": 0, "prs_open": 0, "prs_merged": 2, "done": 2},
    ]
    assert [p["at"] for p in data["burndown"]] == [r.created_at.isoformat() for r in runs]

    assert admin.get(f"{API}/campaigns/nothing_here").status_code == 404
    assert admin.get(f"{API}/campaigns/broken").json()["error"]  # a file, no runs: still found


def test_campaigns_page_lists_and_escapes(ui, store, campaigns) -> None:
    _three_runs(store)
    page = ui.get("/codybatch/campaigns")
    assert page.status_code == 200
    assert XSS not in page.text
    assert f"Upgrade legacy-lib {ESCAPED}" in page.text
    assert 'href="/codybatch/campaigns/upgrade_legacy"' in page.text
    assert "codybatch_campaign__upgrade_legacy" in page.text
    assert "<code>0 6 * * 1</code>" in page.text
    assert "broken.yaml" in page.text and "invalid" in page.text  # listed with its error
    assert "badge-completed" in page.text  # the latest run's status


def test_campaign_page_draws_the_burndown_and_links_the_runs(ui, store, campaigns) -> None:
    runs = _three_runs(store)
    page = ui.get("/codybatch/campaigns/upgrade_legacy")
    assert page.status_code == 200
    assert XSS not in page.text
    svg = re.search(r'<svg class="burndown".*?</svg>', page.text, re.S)
    assert svg, "no inline SVG chart"
    chart = svg.group(0)
    assert chart.count("<polyline") == 3  # needing change, open, merged
    assert chart.count("<circle") == 9  # one dot per run and line
    assert f"2026-03-16 06:00 · {runs[2].job_id}: 2 PRs merged" in chart
    assert "<script" not in chart
    for run in runs:  # the table of runs, newest first
        assert f'href="/codybatch/jobs/{run.job_id}"' in page.text
    table = page.text[page.text.index('<table class="list">') :]
    assert table.index(runs[2].job_id) < table.index(runs[1].job_id) < table.index(runs[0].job_id)
    assert 'href="/dags/codybatch_campaign__upgrade_legacy"' in page.text

    empty = ui.get("/codybatch/campaigns/paused")
    assert empty.status_code == 200 and "No runs yet" in empty.text and "<svg" not in empty.text
    assert "disabled" in empty.text
    assert ui.get("/codybatch/campaigns/nothing_here").status_code == 404


def test_a_campaign_named_like_markup_is_escaped_everywhere(ui, admin, store) -> None:
    run = seed_campaign_run(store, XSS, DAY1, {BILLING: "open"}, name=f"Job {XSS}")
    path = quote(XSS, safe="")
    for url in ("/codybatch/", "/codybatch/campaigns", f"/codybatch/jobs/{run.job_id}"):
        page = ui.get(url)
        assert page.status_code == 200, url
        assert XSS not in page.text and ESCAPED in page.text
        assert f'href="/codybatch/campaigns/{path}"' in page.text  # the job links its campaign
    page = ui.get(f"/codybatch/campaigns/{path}")
    assert page.status_code == 200 and XSS not in page.text
    assert "<svg" in page.text and run.job_id in page.text
    assert admin.get(f"{API}/campaigns/{path}").json()["name"] == XSS


def test_job_pages_show_pull_request_tracking(ui, store) -> None:
    run = seed_campaign_run(
        store, "upgrade_legacy", DAY1, {BILLING: "merged", WEB: "open", DOCS: "patch"}
    )
    web = store.get_result(run.job_id, WEB)
    web.tracking.checks, web.tracking.review = "failure", "changes_requested"
    store.save_result(web)

    page = ui.get(f"/codybatch/jobs/{run.job_id}")
    assert page.status_code == 200
    text = page.text
    assert 'href="/codybatch/campaigns/upgrade_legacy"' in text  # crumbs and facts
    assert 'class="badge pr-open">open<' in text and 'class="badge pr-merged">merged<' in text
    assert "checks failed" in text and "changes requested" in text
    assert "refreshed 2026-03-02 06:00:00 UTC" in text
    assert "left alone: merged by a person" in text
    assert (
        "Skipped: pull request #1 was merged by a person: not reopened; the campaign is done"
        in (text)
    )
    assert "patch only: no push access" in text
    assert "updated: the new change was pushed" in text
    assert f'href="/codybatch/api/v1/jobs/{run.job_id}?format=csv"' in text

    listing = ui.get("/codybatch/").text
    row = re.search(rf"<tr>(?:(?!</tr>).)*{run.job_id}.*?</tr>", listing, re.S).group(0)
    assert "billing #1" in row and "web #2" in row
    assert 'class="badge pr-merged"' in row and "checks failed" in row
    assert "patch only: no push access" in row
    assert "campaign <a" in row


def test_the_shipped_campaign_loads(admin, codybatch_home: Path, monkeypatch) -> None:
    from codybatch.demo import make_examples

    monkeypatch.delenv("CODYBATCH_CAMPAIGNS_DIR", raising=False)
    make_examples(codybatch_home / "examples")  # what `make demo` does: its repositories
    data = admin.get(f"{API}/campaigns").json()["campaigns"]
    shipped = next(c for c in data if c["name"] == "legacy_lib_upgrade")
    assert shipped["error"] is None and shipped["schedule"] == "@daily"


def test_paused_state_comes_from_airflow(airflow_app) -> None:
    assert paused_dags(["codybatch_job", "codybatch_campaign__no_such"]) == {"codybatch_job": False}
    assert paused_dags([]) == {}


def test_chart_geometry() -> None:
    points = [
        {"job_id": "a", "at": "2026-03-02T06:00:00+00:00", "needing_change": 4, "prs_open": 2,
         "prs_merged": 0, "repositories": 4},
        {"job_id": "b", "at": "2026-03-03T06:00:00+00:00", "needing_change": 2, "prs_open": 2,
         "prs_merged": 1, "repositories": 4},
        {"job_id": "c", "at": "2026-03-06T06:00:00+00:00", "needing_change": 0, "prs_open": 0,
         "prs_merged": 4, "repositories": 4},
    ]  # fmt: skip
    chart = burndown_chart(points)
    needing = next(s for s in chart.series if s.key == "needing_change")
    xs = [d.x for d in needing.dots]
    assert xs[0] == chart.left and xs[-1] == chart.right  # first and last run at the edges
    assert (xs[1] - xs[0]) * 4 == pytest.approx(xs[2] - xs[0])  # x is time, not run number
    assert needing.dots[0].y == chart.top and needing.dots[-1].y == chart.bottom  # 4 .. 0
    assert [v for _, v in chart.y_ticks] == [0, 1, 2, 3, 4]
    assert "latest: 0 needing change, 0 PRs open, 4 merged" in chart.summary

    single = burndown_chart(points[:1])
    assert single.series[0].dots[0].x == (chart.left + chart.right) / 2
    assert burndown_chart([]).summary == "no runs yet"
