"""The server-rendered pages, through Airflow's real api-server app."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch.airflow.ui.runs import run_state
from codybatch.records import JobStatus
from tests.airflow.ui.seed import PATCH, XSS, csrf_of, seed_job
from tests.fakes.anthropic_server import fake_anthropic
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow
__all__ = ["fake_anthropic"]  # a fixture

BILLING = quote("github.com/acme/billing", safe="")
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def ui(client, tokens):
    """A browser-like client: the Airflow UI's `_token` cookie, no Bearer header."""
    client.cookies.set("_token", tokens["admin"])
    return client


@pytest.fixture
def viewer_ui(client, tokens):
    client.cookies.set("_token", tokens["viewer"])
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/codybatch/",
        "/codybatch/jobs/new",
        "/codybatch/jobs/job-x",
        f"/codybatch/jobs/job-x/diff/{BILLING}",
        f"/codybatch/jobs/job-x/thread/{BILLING}",
        f"/codybatch/jobs/job-x/patch/{BILLING}",
        "/codybatch/runs/codybatch_job/manual__x",
        "/codybatch/campaigns",
        "/codybatch/campaigns/legacy_lib_upgrade",
        "/codybatch/docs",
    ],
)
def test_anonymous_visitors_are_sent_to_the_login(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/auth/login?next=")
    assert location.endswith(quote(f"http://testserver{path}", safe=""))


def test_anonymous_form_posts_change_nothing(client, store) -> None:
    job = seed_job(store, status=JobStatus.RUNNING)
    response = client.post(f"/codybatch/jobs/{job.job_id}/cancel", data={})
    assert response.status_code == 303 and "/auth/login" in response.headers["location"]
    assert store.get_job(job.job_id).status == JobStatus.RUNNING


def test_jobs_list(ui, store) -> None:
    job = seed_job(store, name=f"Fix {XSS}")
    running = seed_job(store, name="Still going", status=JobStatus.RUNNING)
    page = ui.get("/codybatch/")
    assert page.status_code == 200
    assert f"Fix {ESCAPED}" in page.text and XSS not in page.text
    assert f'href="/codybatch/jobs/{job.job_id}"' in page.text
    assert "badge-completed" in page.text and "badge-running" in page.text
    assert "3,920 tokens" in page.text and "$0.0123" in page.text

    only_running = ui.get("/codybatch/", params={"status": "RUNNING"})
    assert running.job_id in only_running.text and job.job_id not in only_running.text
    assert ui.get("/codybatch/", params={"status": "BOGUS"}).status_code == 400


def test_jobs_list_pages(ui, store) -> None:
    for i in range(26):
        seed_job(store, name=f"job {i}")
    first = ui.get("/codybatch/")
    assert first.text.count('<tr>\n      <td><span class="badge') == 25 or "Older" in first.text
    assert 'href="?page=2"' in first.text and "Newer" not in first.text
    second = ui.get("/codybatch/", params={"page": 2})
    assert "Newer" in second.text and "Older" not in second.text
    names = re.findall(r">job (\d+)<", first.text + second.text)
    assert sorted(map(int, names)) == list(range(26))


def test_job_page_escapes_everything_from_repositories(ui, store) -> None:
    job = seed_job(store)
    page = ui.get(f"/codybatch/jobs/{job.job_id}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert f"Replaced one call. {ESCAPED}" in page.text  # summary
    assert f"Replace oldFunction. {ESCAPED}" in page.text  # prompt
    assert "clone failed: repository not found" in page.text  # error of the other repository
    assert f"/codybatch/jobs/{job.job_id}/diff/{BILLING}" in page.text
    assert f"/codybatch/jobs/{job.job_id}/thread/{BILLING}" in page.text
    assert "data-poll" not in page.text  # finished: no refresh
    assert "Cancel" not in page.text


def test_a_running_job_refreshes_itself_and_can_be_cancelled(ui, store) -> None:
    job = seed_job(store, status=JobStatus.RUNNING)
    page = ui.get(f"/codybatch/jobs/{job.job_id}")
    assert f'data-poll="/codybatch/jobs/{job.job_id}/live"' in page.text
    assert "refreshing while the job runs" in page.text
    assert 'class="danger">Cancel<' in page.text

    live = ui.get(f"/codybatch/jobs/{job.job_id}/live")
    assert live.status_code == 200 and 'data-finished="false"' in live.text
    assert "<html" not in live.text  # a fragment

    response = ui.post(f"/codybatch/jobs/{job.job_id}/cancel", data={"csrf_token": csrf_of(ui)})
    assert response.status_code == 303
    assert response.headers["location"] == f"/codybatch/jobs/{job.job_id}"
    assert store.get_job(job.job_id).status == JobStatus.CANCELLED
    live = ui.get(f"/codybatch/jobs/{job.job_id}/live")
    assert 'data-finished="true"' in live.text and "badge-cancelled" in live.text


def test_cancel_form_needs_the_csrf_token(ui, store) -> None:
    job = seed_job(store, status=JobStatus.RUNNING)
    response = ui.post(f"/codybatch/jobs/{job.job_id}/cancel", data={"csrf_token": "0" * 64})
    assert response.status_code == 403
    assert store.get_job(job.job_id).status == JobStatus.RUNNING


def test_cancel_of_a_finished_job_is_explained(ui, store) -> None:
    job = seed_job(store)
    response = ui.post(f"/codybatch/jobs/{job.job_id}/cancel", data={"csrf_token": csrf_of(ui)})
    assert response.status_code == 409
    assert "already finished (COMPLETED)" in response.text


def test_a_viewer_sees_no_buttons_and_cannot_cancel(viewer_ui, store) -> None:
    job = seed_job(store, status=JobStatus.RUNNING)
    page = viewer_ui.get(f"/codybatch/jobs/{job.job_id}")
    assert page.status_code == 200 and "Cancel" not in page.text
    assert "New job</a>" in page.text  # the nav link stays; the form itself says no
    assert viewer_ui.get("/codybatch/jobs/new").status_code == 403
    token = re.search(r'value="([0-9a-f]{64})"', page.text)
    response = viewer_ui.post(
        f"/codybatch/jobs/{job.job_id}/cancel", data={"csrf_token": token.group(1) if token else ""}
    )
    assert response.status_code == 403
    assert store.get_job(job.job_id).status == JobStatus.RUNNING


def test_unknown_job_page_is_404(ui) -> None:
    page = ui.get("/codybatch/jobs/job-nope")
    assert page.status_code == 404 and "job job-nope not found" in page.text


def test_diff_page_highlights_and_escapes(ui, store) -> None:
    job = seed_job(store)
    page = ui.get(f"/codybatch/jobs/{job.job_id}/diff/{BILLING}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert f"notes/{ESCAPED}.md" in page.text  # a file name from the repository
    assert 'class="hl-k">def</span>' in page.text  # Python highlighted
    assert "newFunction" in page.text and 'class="add"' in page.text
    assert "2 files changed" in page.text
    assert f'href="/codybatch/jobs/{job.job_id}/patch/{BILLING}"' in page.text

    download = ui.get(f"/codybatch/jobs/{job.job_id}/patch/{BILLING}")
    assert download.status_code == 200 and download.content == PATCH
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-disposition"].endswith('.patch"')


def test_diff_page_without_patch(ui, store) -> None:
    job = seed_job(store)
    web = quote("github.com/acme/web", safe="")
    page = ui.get(f"/codybatch/jobs/{job.job_id}/diff/{web}")
    assert page.status_code == 200 and "No patch recorded" in page.text
    assert ui.get(f"/codybatch/jobs/{job.job_id}/patch/{web}").status_code == 404


def test_thread_page(ui, store) -> None:
    job = seed_job(store)
    page = ui.get(f"/codybatch/jobs/{job.job_id}/thread/{BILLING}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert f"I will look first. {ESCAPED}" in page.text  # assistant text
    assert "str_replace_based_edit_tool" in page.text  # tool call
    assert "&#34;command&#34;: &#34;view&#34;" in page.text  # its input
    result = re.search(r'<details class="block tool-result">.*?</details>', page.text, re.S)
    assert result and f"oldFunction(items)  {ESCAPED}" in result.group(0)  # collapsed
    assert "Turn 1" in page.text and "Turn 2" in page.text
    assert "1,280 tokens" in page.text  # turn 1: 1,200 in + 80 out
    assert "Replace oldFunction everywhere." in page.text  # the task
    assert "You are Cody Batch." in page.text  # system prompt, collapsed


def test_new_job_form_lists_repositories_and_reports_errors(ui, monkeypatch) -> None:
    monkeypatch.setenv("CODYBATCH_ALLOWED_REPOSITORIES", "acme/billing,acme/web,acme/*")
    form = ui.get("/codybatch/jobs/new")
    assert form.status_code == 200
    assert 'value="github.com/acme/billing"' in form.text
    assert 'value="github.com/acme/web"' in form.text

    response = ui.post(
        "/codybatch/jobs/new",
        data={"csrf_token": csrf_of(ui), "name": "", "max_turns": "lots"},
    )
    assert response.status_code == 400
    assert "The job was not started" in response.text
    for field in ("name", "prompt", "repositories", "max_turns"):
        assert f"<code>{field}</code>" in response.text


def test_new_job_form_starts_a_run(ui, store, tmp_path: Path, fake_anthropic) -> None:
    repo = make_repo(tmp_path / "svc", {"a.txt": "a\n"})
    response = ui.post(
        "/codybatch/jobs/new",
        data={
            "csrf_token": csrf_of(ui),
            "name": "From the form",
            "prompt": "Say hello",
            "more_repositories": str(repo),
            "steps": "echo one\necho two",
        },
    )
    assert response.status_code == 303, response.text
    job_id = response.headers["location"].rsplit("/", 1)[1]
    job = store.get_job(job_id)
    assert job.name == "From the form" and job.repositories == [str(repo)]
    assert job.spec["steps"] == ["echo one", "echo two"]
    assert run_state(job.dag_id, job.run_id) in ("queued", "running")


def test_new_job_form_refuses_a_retired_model(ui, store, tmp_path: Path, fake_anthropic) -> None:
    repo = make_repo(tmp_path / "svc", {"a.txt": "a\n"})
    data = {
        "csrf_token": csrf_of(ui),
        "name": "Old model",
        "prompt": "Say hello",
        "more_repositories": str(repo),
        "model": "claude-sonnet-4-5",
    }
    response = ui.post("/codybatch/jobs/new", data=data)
    assert response.status_code == 400
    assert "retired on 2026-11-30" in response.text and "claude-sonnet-5-5" in response.text
    assert store.list_jobs() == [] and fake_anthropic.message_requests == []


def test_job_page_shows_the_jobs_warnings(ui, store) -> None:
    job = seed_job(store)
    warning = "model 'claude-haiku-4-5' is deprecated and retires on 2027-04-01"
    store.update_job(job.job_id, warnings=[warning])
    page = ui.get(f"/codybatch/jobs/{job.job_id}")
    assert page.status_code == 200 and warning.replace("'", "&#39;") in page.text
    api = ui.get(f"/codybatch/api/v1/jobs/{job.job_id}").json()
    assert api["warnings"] == [warning]


def test_new_job_form_needs_the_csrf_token(ui, store, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "svc", {"a.txt": "a\n"})
    data = {"name": "x", "prompt": "y", "more_repositories": str(repo)}
    assert ui.post("/codybatch/jobs/new", data=data).status_code == 403
    assert store.list_jobs() == []


def test_results_tab_opens_the_job_of_the_run(ui, store) -> None:
    job = seed_job(store, run_id="manual__2026-01-01T00:00:00+00:00")
    response = ui.get(f"/codybatch/runs/codybatch_job/{quote(job.run_id, safe='')}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/codybatch/jobs/{job.job_id}"
    other = ui.get("/codybatch/runs/some_other_dag/manual__nothing")
    assert other.status_code == 200 and "There is no run" in other.text


def test_docs_page_for_users(ui) -> None:
    page = ui.get("/codybatch/docs")
    assert page.status_code == 200 and "/codybatch/openapi.json" in page.text


def test_plugin_is_registered_with_airflow(admin) -> None:
    plugins = admin.get("/api/v2/plugins").json()["plugins"]
    plugin = next(p for p in plugins if p["name"] == "codybatch")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/codybatch"
    views = {v["name"]: v for v in plugin["external_views"]}
    assert views["Cody Batch"]["destination"] == "nav"
    assert views["Cody Batch"]["href"] == "/codybatch/"
    assert views["Results"]["destination"] == "dag_run"
    assert views["Results"]["href"] == "/codybatch/runs/{DAG_ID}/{RUN_ID}"
    assert len({v["url_route"] for v in views.values()}) == 2
    assert admin.get("/codybatch/static/icon.svg").status_code == 200


def test_a_running_repository_shows_its_phase_tokens_elapsed_time_and_task_log(ui, store) -> None:
    from datetime import timedelta

    from codybatch.records import Phase, Progress, Usage, utcnow

    job = seed_job(store, name="Live one", status=JobStatus.RUNNING)
    web = store.get_result(job.job_id, "github.com/acme/web")
    web.started_at = utcnow() - timedelta(minutes=3, seconds=5)
    web.progress = Progress(
        Phase.CLAUDE, turn=7, usage=Usage(12_000, 345), last_tool="editor: src/" + "x" * 200
    )
    store.save_result(web)

    fragment = ui.get(f"/codybatch/jobs/{job.job_id}/live")
    assert fragment.status_code == 200
    card = fragment.text.split('id="r-2"')[1]
    assert '<span class="phase">Claude turn 7</span>' in card
    assert "12,345 tokens" in card
    assert re.search(r'class="elapsed"[^>]*>3m 0[5-9]s<', card)
    assert "last tool: editor: src/xxx" in card and 'title="editor: src/' in card
    log_url = f"/dags/codybatch_job/runs/{quote(job.run_id, safe='')}/tasks/process/mapped/1"
    assert f'href="{log_url}" data-airflow-link>task log' in card
    # A finished repository says so, with its time and total usage, not "Claude turn".
    first = fragment.text.split('id="r-1"')[1].split('id="r-2"')[0]
    assert '<span class="phase">completed</span>' in first and "Claude turn" not in first
