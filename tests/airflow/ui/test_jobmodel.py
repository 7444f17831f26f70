"""The job model behind the plugin: typed OpenAPI, job types, refused fields, any stored row."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.records import Job, JobStatus
from tests.airflow.ui.seed import csrf_of
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


def test_openapi_types_the_create_job_body_and_answer(admin) -> None:
    doc = admin.get("/codybatch/openapi.json").json()
    post = doc["paths"]["/api/v1/jobs"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["name", "repositories"]
    props = body["properties"]
    assert props["repositories"]["maxItems"] == 5 and props["name"]["maxLength"] == 100
    assert "code-pattern-update" in props["type"]["enum"]
    answer = post["responses"]["201"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/CreatedJob")
    assert "/api/v1/job-types" in doc["paths"]


def test_job_types_are_listed(admin) -> None:
    found = {t["name"]: t for t in admin.get(f"{API}/job-types").json()["job_types"]}
    assert {"custom", "code-pattern-update", "security-fix"} <= set(found)
    names = [v["name"] for v in found["code-pattern-update"]["variables"]]
    assert names == ["old", "new"]


def test_the_plugin_refuses_what_the_dag_would(admin, codybatch_home: Path, store) -> None:
    repo = make_repo(codybatch_home / "examples" / "svc", {"a": "1"})
    body = {"name": "x", "steps": ["true"], "repositories": [str(repo)], "campaign": "sneaky"}
    response = admin.post(f"{API}/jobs", json=body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "campaign", "message": "is set by a campaign's own runs only: remove it"}
    ]
    assert store.list_jobs() == []


def test_the_form_offers_job_types_and_their_variables(ui) -> None:
    page = ui.get("/codybatch/jobs/new").text
    assert '<option value="code-pattern-update"' in page
    assert 'name="var__code-pattern-update__old"' in page
    assert 'maxlength="100"' not in page  # the browser would cut a long name silently


def test_a_typed_job_from_the_form(ui, store, codybatch_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    repo = make_repo(codybatch_home / "examples" / "svc", {"a.js": "oldFunction()\n"})
    response = ui.post(
        "/codybatch/jobs/new",
        data={
            "csrf_token": csrf_of(ui),
            "name": "Typed",
            "type": "code-pattern-update",
            "var__code-pattern-update__old": "oldFunction()",
            "var__code-pattern-update__new": "newFunction()",
            "var__lint-fix__command": "ignored: another type's field",
            "more_repositories": str(repo),
        },
    )
    assert response.status_code == 303, response.text
    job = store.get_job(response.headers["location"].rsplit("/", 1)[1])
    assert job.spec["variables"] == {"old": "oldFunction()", "new": "newFunction()"}
    assert job.spec["rendered_prompt"].startswith("Replace every use of `oldFunction()`")
    page = ui.get(f"/codybatch/jobs/{job.job_id}").text
    assert "Task for Claude" in page and "code-pattern-update" in page


def test_any_stored_row_can_be_read(ui, admin, store) -> None:
    """A row written before the strict model (a lone surrogate) must not fail pages for all."""
    spec = {"name": "bad \udcff name", "repositories": [], "prompt": "why \ud800"}
    job = store.create_job(Job(job_id="job-stored-bad", spec=spec, status=JobStatus.FAILED))
    for path in ("/codybatch/", f"/codybatch/jobs/{job.job_id}"):
        assert ui.get(path).status_code == 200
    for path in (f"{API}/jobs", f"{API}/jobs?format=csv", f"{API}/jobs/{job.job_id}"):
        assert admin.get(path).status_code == 200, path
