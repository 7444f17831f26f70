"""The plugin in a real Airflow UI: log in, nav entry, job, diff, thread, a run's Results tab."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch.records import JobStatus
from codybatch.store.local import LocalStore
from tests.airflow.ui.seed import XSS, seed_campaign_run, seed_job
from tests.helpers import make_repo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def seeded(airflow_server):
    """A finished job and a running one, written to the store the server reads."""
    store = LocalStore(airflow_server.codybatch_home)
    done = seed_job(store, name="Replace oldFunction (seeded)")
    seed_job(store, name="Still running", status=JobStatus.RUNNING)
    return done


@pytest.fixture(scope="module")
def dialogs(page) -> list[str]:
    """Every alert/confirm the pages open: a <script> that ran would show up here."""
    seen: list[str] = []

    def record(dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return seen


def _frame(page, title: str):
    return page.frame_locator(f'iframe[title="{title}"]')


def test_login_then_the_nav_entry_shows_the_jobs(page, airflow_server, seeded, dialogs, shot):
    from playwright.sync_api import expect

    page.goto(airflow_server.url + "/codybatch/")
    assert "/auth/login" in page.url  # the plugin sends anonymous visitors to Airflow's login
    shot(page, "login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(airflow_server.url + "/codybatch/")
    expect(page.get_by_role("link", name="Replace oldFunction (seeded)")).to_be_visible()

    page.goto(airflow_server.url + "/")
    page.get_by_role("link", name="Cody Batch").first.click()
    page.wait_for_url("**/plugin/cody-batch**")
    frame = _frame(page, "Cody Batch")
    expect(frame.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(frame.get_by_role("link", name="Replace oldFunction (seeded)")).to_be_visible()
    expect(frame.locator(".badge-running").first).to_be_visible()
    shot(page, "jobs-in-airflow")


def test_job_diff_and_thread_inside_the_ui(page, airflow_server, seeded, dialogs, shot):
    from playwright.sync_api import expect

    page.goto(airflow_server.url + "/plugin/cody-batch")
    frame = _frame(page, "Cody Batch")
    frame.get_by_role("link", name="Replace oldFunction (seeded)").click()
    expect(frame.get_by_role("heading", name="github.com/acme/billing")).to_be_visible()
    expect(frame.get_by_text("clone failed: repository not found")).to_be_visible()
    expect(frame.get_by_text(f"Replaced one call. {XSS}")).to_be_visible()  # text, not markup
    shot(page, "job")

    frame.get_by_role("link", name="Diff").click()
    expect(frame.get_by_text("2 files changed")).to_be_visible()
    expect(frame.locator("td.src .hl-k").first).to_have_text("def")  # highlighted Python
    expect(frame.locator("tr.add td.src").first).to_contain_text("newFunction(items")
    expect(frame.locator("details.file summary").nth(1)).to_contain_text(f"notes/{XSS}.md")
    expect(frame.get_by_role("link", name="Download .patch")).to_be_visible()
    shot(page, "diff")

    frame.get_by_role("link", name="Replace oldFunction (seeded)").click()
    frame.get_by_role("link", name="Claude thread").click()
    expect(frame.get_by_role("heading", name="Turn 2")).to_be_visible()
    expect(frame.get_by_text(f"I will look first. {XSS}")).to_be_visible()
    result = frame.locator("details.tool-result").first
    expect(result.locator("pre")).to_be_hidden()  # tool results start collapsed
    result.locator("summary").click()
    expect(result.locator("pre")).to_contain_text(XSS)
    shot(page, "thread")
    assert dialogs == []  # no <script> from the seeded data ran


def test_campaigns_and_a_burndown_inside_the_ui(page, airflow_server, seeded, dialogs, shot):
    from playwright.sync_api import expect

    store = LocalStore(airflow_server.codybatch_home)
    day = datetime(2026, 3, 2, 6, tzinfo=UTC)
    billing, web = "github.com/acme/billing", "github.com/acme/web"
    for week, outcomes in enumerate(
        [{billing: "open", web: "patch"}, {billing: "merged", web: "open"}, {web: "merged"}]
    ):
        seed_campaign_run(store, "legacy_lib_upgrade", day + timedelta(days=7 * week), outcomes)

    page.goto(airflow_server.url + "/plugin/cody-batch")
    frame = _frame(page, "Cody Batch")
    expect(frame.locator(".badge.pr-merged").first).to_be_visible()  # the jobs list's PR column
    shot(page, "jobs-with-pull-requests")
    frame.get_by_role("navigation").get_by_role("link", name="Campaigns").click()
    expect(frame.get_by_role("heading", name="Campaigns")).to_be_visible()
    expect(frame.get_by_text("codybatch_campaign__legacy_lib_upgrade")).to_be_visible()
    shot(page, "campaigns")

    frame.get_by_role("link", name="legacy_lib_upgrade").first.click()
    expect(frame.get_by_role("heading", name="Burndown")).to_be_visible()
    expect(frame.locator("svg.burndown polyline")).to_have_count(3)
    shot(page, "campaign")

    frame.locator("table.list a").first.click()  # the newest run
    expect(frame.get_by_text("left alone: merged by a person").first).to_be_visible()
    shot(page, "campaign-run")
    assert dialogs == []


def test_results_tab_of_a_run_follows_the_job_live(
    page, airflow_server, seeded, dialogs, shot, tmp_path_factory
):
    from playwright.sync_api import expect

    repo = make_repo(
        tmp_path_factory.mktemp("repos") / "billing-service",
        {"src/invoice.js": "export const total = (x) => oldFunction(x);\n"},
    )
    token = airflow_server.token()
    body = {
        "name": "Rename oldFunction in the browser test",
        "repositories": [str(repo)],
        "steps": ["sed -i 's/oldFunction/newFunction/g' src/invoice.js"],
    }
    deadline = time.monotonic() + 120
    while True:  # 503 until the dag-processor has parsed dags/
        status, created = airflow_server.post("/codybatch/api/v1/jobs", body, token)
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 201, created

    run_url = f"/dags/codybatch_job/runs/{quote(created['run_id'], safe='')}"
    page.goto(airflow_server.url + run_url + "/plugin/cody-batch-results")
    frame = _frame(page, "Results")
    # "Results" until `register` has run (the page reloads itself), then the job.
    expect(frame.get_by_role("heading", name=body["name"])).to_be_visible(timeout=120_000)
    # The page refreshes itself while the job runs: no reload here.
    expect(frame.locator("h1 .badge-completed")).to_be_visible(timeout=240_000)
    expect(frame.get_by_role("link", name="Diff")).to_be_visible()
    shot(page, "results-tab")
    frame.get_by_role("link", name="Diff").click()
    expect(frame.locator("tr.add td.src").first).to_contain_text("newFunction")
    shot(page, "results-tab-diff")

    # A link to the DAG run moves the Airflow UI itself rather than nesting it in the tab.
    frame.get_by_role("link", name=body["name"]).click()
    frame.get_by_role("link", name=f"codybatch_job / {created['run_id']}").click()
    page.wait_for_url(lambda url: url.endswith(run_url))
    expect(page.locator('iframe[title="Results"]')).to_have_count(0)
    assert Path(str(repo)).exists() and dialogs == []
