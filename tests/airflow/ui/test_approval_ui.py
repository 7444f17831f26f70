"""Answering a job's approval from the Cody Batch job page and the plugin API, while a real
Airflow run (dag.test) waits at its HITL task: one answer only, then publishing follows."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from codybatch.airflow.approval import answer_approval
from codybatch.approval import PUBLISH_NONE
from codybatch.records import job_id_for_run
from codybatch.store.local import LocalStore
from tests.airflow.test_approval import API, CONF, DOCS, WEB, Person, _respond, job_dag
from tests.airflow.ui.seed import seed_job
from tests.fakes.github_server import FakeGitHub, fake_github

pytestmark = pytest.mark.airflow
__all__ = ["fake_github", "job_dag"]

JOBS = "/codybatch/api/v1/jobs"


def _guarded(answer, seen: dict[str, object]):
    """The answer, and when it fails, "Publish none" so the run ends (and the test fails)."""

    def run(dag_id: str, run_id: str, options: list[str], body: str) -> None:
        try:
            answer(dag_id, run_id, options, body)
        except BaseException as exc:
            seen["error"] = repr(exc)
            with contextlib.suppress(Exception):
                answer_approval(dag_id, run_id, [PUBLISH_NONE], Person("0", "unblock"))

    return run


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)


def test_a_person_answers_from_the_job_page_once(
    job_dag, client, tokens, fake_github: FakeGitHub, codybatch_home: Path
) -> None:
    seen: dict[str, object] = {}

    def answer(dag_id: str, run_id: str, options: list[str], body: str) -> None:
        url = f"/codybatch/jobs/{job_id_for_run(dag_id, run_id)}"
        client.cookies.set("_token", tokens["viewer"])
        viewer_page = client.get(url).text
        seen["viewer_form"] = '/approval">' in viewer_page
        seen["viewer_text"] = "you may not answer it" in viewer_page
        client.cookies.clear()
        seen["viewer_post"] = client.post(
            f"{url}/approval",
            data={"decision": "all"},
            headers={"Authorization": f"Bearer {tokens['viewer']}"},
        ).status_code
        client.cookies.set("_token", tokens["admin"])
        page = client.get(url).text
        seen["boxes"] = re.findall(r'name="repositories" value="([^"]+)"', page)
        token = _csrf(page)
        seen["none_checked"] = client.post(
            f"{url}/approval", data={"csrf_token": token, "decision": "selected"}
        ).status_code
        seen["no_csrf"] = client.post(
            f"{url}/approval", data={"decision": "selected", "repositories": WEB}
        ).status_code
        done = client.post(
            f"{url}/approval",
            data={"csrf_token": token, "decision": "selected", "repositories": [WEB]},
        )
        seen["answered"] = done.status_code, done.headers.get("location")
        seen["after"] = client.get(url).text
        again = client.post(f"{url}/approval", data={"csrf_token": token, "decision": "all"})
        seen["again"] = again.status_code, again.text
        client.cookies.clear()
        api = client.post(
            f"{JOBS}/{job_id_for_run(dag_id, run_id)}/approval",
            json={"reject": True},
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        )
        seen["api_again"] = api.status_code, api.json().get("detail", "")

    thread = _respond(_guarded(answer, seen))
    run = job_dag.test(run_conf=CONF)
    thread.join(5)
    assert "error" not in seen, seen["error"]
    assert run.state == "success"
    assert seen["viewer_form"] is False and seen["viewer_text"] is True
    assert seen["viewer_post"] == 403
    assert seen["boxes"] == [API, WEB]  # docs did not change: not asked
    assert seen["none_checked"] == 400 and seen["no_csrf"] == 403
    job_id = job_id_for_run("codybatch_job", run.run_id)
    assert seen["answered"] == (303, f"/codybatch/jobs/{job_id}")
    assert "Answered by admin" in seen["after"] and 'name="repositories"' not in seen["after"]
    status, text = seen["again"]
    assert status == 409 and "already answered by admin" in text
    status, detail = seen["api_again"]
    assert status == 409 and "already answered by admin" in detail and WEB in detail

    store = LocalStore(codybatch_home)
    results = {r.repository: r for r in store.list_results(job_id)}
    assert fake_github.pulls("acme/api") == [] and len(fake_github.pulls("acme/web")) == 1
    assert (results[WEB].approval.state, results[WEB].approval.by) == ("approved", "admin")
    assert (results[API].approval.state, results[API].approval.by) == ("rejected", "admin")
    assert results[DOCS].approval is None
    page = client.get(
        f"/codybatch/jobs/{job_id}", headers={"Authorization": f"Bearer {tokens['admin']}"}
    )
    assert "<strong>Approval</strong>: approved by admin" in page.text


def test_the_api_approves_all_and_refuses_what_is_not_waiting(
    job_dag, client, tokens, fake_github: FakeGitHub, codybatch_home: Path
) -> None:
    seen: dict[str, object] = {}
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}

    def answer(dag_id: str, run_id: str, options: list[str], body: str) -> None:
        url = f"{JOBS}/{job_id_for_run(dag_id, run_id)}/approval"
        docs = client.post(url, json={"approve": ["acme/docs"]}, headers=bearer)
        seen["docs"] = docs.status_code, docs.json()["detail"]
        both = client.post(url, json={"approve": ["all"], "reject": True}, headers=bearer)
        seen["both"] = both.status_code
        done = client.post(url, json={"approve": "all"}, headers=bearer)
        seen["done"] = done.status_code, done.json()

    thread = _respond(_guarded(answer, seen))
    run = job_dag.test(run_conf=CONF)
    thread.join(5)
    assert "error" not in seen, seen["error"]
    assert run.state == "success"
    status, detail = seen["docs"]
    assert status == 400 and "github.com/acme/docs is not waiting for approval" in detail
    assert seen["both"] == 400
    status, body = seen["done"]
    assert status == 200
    assert (body["approved"], body["rejected"], body["by"]) == ([API, WEB], [], "admin")
    assert len(fake_github.pulls("acme/api")) == 1 and len(fake_github.pulls("acme/web")) == 1
    store = LocalStore(codybatch_home)
    job_id = job_id_for_run("codybatch_job", run.run_id)
    states = {r.repository: r.approval.state for r in store.list_results(job_id) if r.approval}
    assert states == {API: "approved", WEB: "approved"}


def test_a_job_without_an_approval_request_says_so(client, tokens, codybatch_home: Path) -> None:
    store = LocalStore(codybatch_home)
    job = seed_job(store)
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    response = client.post(f"{JOBS}/{job.job_id}/approval", json={"reject": True}, headers=bearer)
    assert response.status_code == 404 and "has no approval request" in response.json()["detail"]
    bad = client.post(f"{JOBS}/{job.job_id}/approval", json={"approve": "acme/x"}, headers=bearer)
    assert bad.status_code == 400 and bad.json()["detail"].startswith("approve: must be")
    page = client.get(f"/codybatch/jobs/{job.job_id}", headers=bearer)
    assert "Approval before publishing" not in page.text
