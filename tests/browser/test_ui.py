"""The plugin in a real Airflow UI: log in, nav entry, job, diff, thread, a run's Results tab,
pages that hold up (long names, a failed thread, offline API docs) and live progress."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from codybatch.agent import prompts
from codybatch.agent.loop import THREAD_FORMAT, tool_definitions
from codybatch.records import JobStatus, Phase, RepositoryStatus
from codybatch.store.local import LocalStore
from tests.airflow.ui.seed import XSS, seed_campaign_run, seed_job
from tests.fakes.anthropic_server import Delay, finish, reply, str_replace, view
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


def _sign_in(page, airflow_server) -> None:
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(airflow_server.url + "/codybatch/")


@pytest.fixture
def signed_in(page, airflow_server) -> None:
    """The module's tab signed in, whichever test runs first (the login test signs in through
    the page; a test run alone signs in here)."""
    page.goto(airflow_server.url + "/codybatch/")
    if "/auth/login" in page.url:
        _sign_in(page, airflow_server)


def test_login_then_the_nav_entry_shows_the_jobs(page, airflow_server, seeded, dialogs, shot):
    from playwright.sync_api import expect

    page.goto(airflow_server.url + "/codybatch/")
    assert "/auth/login" in page.url  # the plugin sends anonymous visitors to Airflow's login
    shot(page, "login")
    _sign_in(page, airflow_server)
    expect(page.get_by_role("link", name="Replace oldFunction (seeded)")).to_be_visible()

    page.goto(airflow_server.url + "/")
    page.get_by_role("link", name="Cody Batch").first.click()
    page.wait_for_url("**/plugin/cody-batch**")
    frame = _frame(page, "Cody Batch")
    expect(frame.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(frame.get_by_role("link", name="Replace oldFunction (seeded)")).to_be_visible()
    expect(frame.locator(".badge-running").first).to_be_visible()
    shot(page, "jobs-in-airflow")


def test_job_diff_and_thread_inside_the_ui(page, signed_in, airflow_server, seeded, dialogs, shot):
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


def test_campaigns_and_a_burndown_inside_the_ui(
    page, signed_in, airflow_server, seeded, dialogs, shot
):
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


def _create_job(airflow_server, body: dict) -> dict:
    token = airflow_server.token()
    deadline = time.monotonic() + 120
    while True:  # 503 until the dag-processor has parsed dags/
        status, created = airflow_server.post("/codybatch/api/v1/jobs", body, token)
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 201, created
    return created


def test_results_tab_of_a_run_follows_the_job_live(
    page, signed_in, airflow_server, seeded, dialogs, shot, tmp_path_factory
):
    from playwright.sync_api import expect

    repo = make_repo(
        tmp_path_factory.mktemp("repos") / "billing-service",
        {"src/invoice.js": "export const total = (x) => oldFunction(x);\n"},
    )
    body = {
        "name": "Rename oldFunction in the browser test",
        "repositories": [str(repo)],
        "steps": ["sed -i 's/oldFunction/newFunction/g' src/invoice.js"],
    }
    created = _create_job(airflow_server, body)

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


LONG_NAME = "Upgrade the logging library in every service to structlog-" + "x" * 42
LONG_REPO = "github.com/acme/" + "payments-reconciliation-service-" * 3


def test_a_long_job_name_keeps_the_jobs_list_inside_the_embedded_view(
    page, signed_in, airflow_server, seeded, dialogs, shot
):
    from playwright.sync_api import expect

    assert len(LONG_NAME) == 100
    store = LocalStore(airflow_server.codybatch_home)
    seed_job(store, name=LONG_NAME, repositories=(LONG_REPO, "github.com/acme/web"))
    page.goto(airflow_server.url + "/plugin/cody-batch")
    frame = _frame(page, "Cody Batch")
    link = frame.get_by_role("link", name=LONG_NAME)
    expect(link).to_be_visible()
    assert link.get_attribute("title") == LONG_NAME  # the full name on hover
    shot(page, "jobs-long-name")

    view_box = page.locator('iframe[title="Cody Batch"]').bounding_box()
    width, scroll_width = frame.locator("html").evaluate("e => [e.clientWidth, e.scrollWidth]")
    assert scroll_width <= width  # nothing scrolls sideways inside the embedded view
    for header in ("Status", "Name", "Usage", "Created"):
        box = frame.get_by_role("columnheader", name=header).bounding_box()
        assert box and box["width"] > 30, header
        assert view_box["x"] <= box["x"] and box["x"] + box["width"] <= view_box["x"] + width
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    row = frame.get_by_role("row").filter(has=link)
    expect(row.locator(".badge-completed")).to_be_in_viewport()


ERROR = (
    "Claude API error 400 (invalid_request_error): prompt is too long: 212,345 tokens, "
    "200,000 maximum [request id req_browser_1; gave up after 0 retries]"
)


def _seed_failed_thread(store: LocalStore) -> tuple[str, str]:
    """A job whose repository failed at Claude's first call: the thread as the agent saves
    it (the real system prompt and tool definitions), with no answered turn."""
    job = seed_job(store, name="Never answered", status=JobStatus.FAILED)
    repository = job.repositories[0]
    store.put_thread(
        job.job_id,
        repository,
        {
            "format": THREAD_FORMAT,
            "model": "claude-sonnet-5-5",
            "provider": "anthropic",
            "system": prompts.SYSTEM,
            "tools": tool_definitions(True),
            "turns": [
                {
                    "index": 1,
                    "request": {
                        "messages": [{"role": "user", "content": "Replace oldFunction."}],
                        "max_tokens": 32000,
                    },
                    "error": ERROR,
                    "seconds": 0.4,
                }
            ],
            "usage_total": {},
            "stop_reason": "error",
            "error": ERROR,
        },
    )
    result = store.get_result(job.job_id, repository)
    result.status, result.failed_phase = RepositoryStatus.FAILED, Phase.CLAUDE
    result.error, result.stop_reason = f"Claude could not finish: {ERROR}", "error"
    result.summary, result.has_patch, result.has_thread = None, False, True
    store.save_result(result)
    return job.job_id, repository


def test_a_failed_thread_shows_the_error_in_the_first_screen(
    page, signed_in, airflow_server, dialogs, shot
):
    from playwright.sync_api import expect

    job_id, repository = _seed_failed_thread(LocalStore(airflow_server.codybatch_home))
    page.goto(f"{airflow_server.url}/codybatch/jobs/{job_id}/thread/{quote(repository, safe='')}")
    error = page.locator(".happened pre.error")
    expect(error).to_contain_text("prompt is too long")
    shot(page, "failed-thread")

    height = page.viewport_size["height"]
    box = error.bounding_box()
    assert box["y"] + box["height"] <= height  # read without scrolling
    expect(page.get_by_text("Failed while")).to_be_in_viewport()
    expect(page.get_by_text("none: Claude was never answered")).to_be_in_viewport()
    # The system prompt and the tools wait, collapsed, below everything else.
    system = page.locator("details.system")
    expect(system.locator("pre")).to_be_hidden()
    expect(page.locator("details.tools .tool-name").first).to_be_hidden()
    assert system.bounding_box()["y"] > box["y"]
    page_height = page.evaluate("document.documentElement.scrollHeight")
    assert page_height < 2 * height, page_height  # not a wall of raw prompt
    system.locator("summary").click()
    expect(system.locator("pre")).to_contain_text(prompts.SYSTEM.split("\n")[0])
    assert dialogs == []


def test_the_api_docs_render_with_no_network(page, signed_in, airflow_server, shot):
    from playwright.sync_api import expect

    requests: list[str] = []
    refused: list[str] = []

    def on_request(request) -> None:
        requests.append(request.url)

    def on_console(message) -> None:
        if message.type == "error":
            refused.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    try:
        page.goto(airflow_server.url + "/codybatch/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Cody Batch")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        expect(page.get_by_text("/api/v1/jobs").first).to_be_visible()
        shot(page, "api-docs")
    finally:
        page.remove_listener("request", on_request)
        page.remove_listener("console", on_console)
    hosts = {urlsplit(url).hostname for url in requests if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requests
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requests)
    assert refused == []  # no asset refused by the Content-Security-Policy, none missing


def _progress(page) -> tuple[str, int | None] | None:
    """The phase and tokens a repository card shows, read at once (the card is replaced as the
    page refreshes itself, so two separate reads could straddle a refresh); None between."""
    phase, tokens = page.evaluate(
        """() => {
          const text = (s) => document.querySelector(s)?.innerText ?? null;
          return [text('.result .progress .phase'), text('.result .progress .tokens')];
        }"""
    )
    if phase is None:
        return None
    found = re.search(r"([\d,]+) tokens", tokens or "")
    return phase, int(found.group(1).replace(",", "")) if found else None


def test_a_running_job_shows_its_phase_and_tokens_advance(
    page, signed_in, airflow_server, dialogs, shot, tmp_path_factory
):
    from playwright.sync_api import expect

    repo = make_repo(
        tmp_path_factory.mktemp("repos") / "ledger",
        {"src/ledger.py": "def total(items):\n    return oldFunction(items)\n"},
    )
    pause = 6  # seconds the fake Claude takes per answer: longer than a progress write apart
    airflow_server.claude.script(
        Delay(pause, reply("Let me look.", view("/repo/src/ledger.py"))),
        Delay(pause, reply(str_replace("/repo/src/ledger.py", "oldFunction", "newFunction"))),
        Delay(pause, reply(finish(True, "Replaced one call.", "Use newFunction"))),
    )
    body = {
        "name": "Live progress in the browser",
        "prompt": "Replace oldFunction with newFunction.",
        "repositories": [str(repo)],
    }
    created = _create_job(airflow_server, body)
    page.goto(f"{airflow_server.url}/codybatch/jobs/{created['job_id']}")
    expect(page.get_by_role("heading", name=body["name"])).to_be_visible()

    # The page refreshes itself: sample what it shows, without reloading, until it is done.
    seen: list[tuple[str, int | None]] = []
    done = page.locator("h1 .badge-completed")
    deadline = time.monotonic() + 300
    while not done.count() and time.monotonic() < deadline:
        sample = _progress(page)
        if sample and (not seen or sample != seen[-1]):
            seen.append(sample)
            if sample[0].startswith("Claude turn"):
                shot(page, sample[0].replace(" ", "-").lower())
        page.wait_for_timeout(500)
    expect(done).to_be_visible()
    turns = [(int(p.split()[-1]), t) for p, t in seen if p.startswith("Claude turn")]
    assert len({n for n, _ in turns}) >= 2, seen  # the turn advanced on the page
    assert all(t for _, t in turns) and [t for _, t in turns] == sorted(t for _, t in turns)
    assert turns[-1][1] > turns[0][1], seen  # and so did the tokens so far
    assert seen[-1][0] == "completed"
    expect(page.locator(".result .progress .elapsed")).to_be_visible()
    expect(page.get_by_role("link", name="task log")).to_have_attribute(
        "href", re.compile(r"/dags/codybatch_job/runs/.+/tasks/process/mapped/0$")
    )
    shot(page, "completed")
    assert airflow_server.claude.remaining == 0 and dialogs == []
