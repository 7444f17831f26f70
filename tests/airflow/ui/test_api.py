"""The JSON API under /codybatch/api/v1, through Airflow's real api-server app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from codybatch.airflow.ui.runs import run_state
from codybatch.records import JobStatus, RepositoryStatus, job_id_for_run
from tests.airflow.ui.seed import PATCH, THREAD, csrf_of, seed_job
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
BILLING = quote("github.com/acme/billing", safe="")


@pytest.fixture
def local_repos(tmp_path: Path) -> list[str]:
    return [str(make_repo(tmp_path / name, {"app.py": "print('hi')\n"})) for name in ("one", "two")]


def _job_body(repos: list[str], **extra) -> dict:
    return {"name": "Rename things", "steps": ["echo hi"], "repositories": repos, **extra}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/repositories"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/job-x"),
        ("POST", "/jobs/job-x/cancel"),
        ("GET", f"/jobs/job-x/repositories/{BILLING}"),
        ("GET", f"/jobs/job-x/repositories/{BILLING}/diff"),
        ("GET", f"/jobs/job-x/repositories/{BILLING}/claude-thread"),
        ("POST", f"/jobs/job-x/repositories/{BILLING}/publish"),
        ("GET", "/jobs?format=csv"),
        ("GET", "/jobs/job-x?format=csv"),
        ("GET", "/campaigns"),
        ("GET", "/campaigns/legacy_lib_upgrade"),
    ],
)
def test_every_route_needs_an_airflow_user(client, method: str, path: str) -> None:
    response = client.request(method, API + path, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.json()["detail"] == "Not authenticated"


def test_a_forged_token_is_refused(client) -> None:
    response = client.get(f"{API}/jobs", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code in (401, 403)


def test_openapi_is_served_to_users_only(client, tokens) -> None:
    assert client.get("/codybatch/openapi.json").status_code == 401
    response = client.get(
        "/codybatch/openapi.json", headers={"Authorization": f"Bearer {tokens['admin']}"}
    )
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {
        "/api/v1/health",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/repositories/{repository}/diff",
        "/api/v1/jobs/{job_id}/repositories/{repository}/claude-thread",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{name}",
    } <= paths
    assert not any(p.startswith("/jobs") for p in paths)  # pages are not API


def test_health(admin) -> None:
    response = admin.get(f"{API}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_jobs_newest_first_filtered_and_paginated(admin, store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    first = seed_job(store, name="first", created_at=now - timedelta(hours=2))
    second = seed_job(store, "second", JobStatus.RUNNING, created_at=now - timedelta(hours=1))
    third = seed_job(store, name="third", created_at=now)

    listing = admin.get(f"{API}/jobs").json()
    assert [j["job_id"] for j in listing["jobs"]] == [third.job_id, second.job_id, first.job_id]
    assert listing["jobs"][0]["counts"] == {
        "total": 2,
        "finished": 2,
        "changed": 1,
        "failed": 1,
        "pull_requests": 0,
        "prs_open": 0,
        "prs_merged": 0,
        "prs_closed": 0,
    }

    page = admin.get(f"{API}/jobs", params={"limit": 2}).json()
    assert [j["job_id"] for j in page["jobs"]] == [third.job_id, second.job_id]
    assert page["next_offset"] == 2
    rest = admin.get(f"{API}/jobs", params={"limit": 2, "offset": 2}).json()
    assert [j["job_id"] for j in rest["jobs"]] == [first.job_id]
    assert rest["next_offset"] is None
    after = admin.get(f"{API}/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["job_id"] for j in after["jobs"]] == [first.job_id]
    assert (after["cursor"], after["next_cursor"]) == (page["next_cursor"], None)
    # Pasted unencoded into a URL (as from a shell), the cursor still reads the same page.
    pasted = admin.get(f"{API}/jobs?limit=2&cursor={page['next_cursor']}").json()
    assert [j["job_id"] for j in pasted["jobs"]] == [first.job_id]
    newer = seed_job(store, name="fourth", created_at=now + timedelta(hours=1))
    again = admin.get(f"{API}/jobs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [j["job_id"] for j in again["jobs"]] == [first.job_id]  # a new job shifts nothing
    assert newer.job_id in {j["job_id"] for j in admin.get(f"{API}/jobs").json()["jobs"]}

    running = admin.get(f"{API}/jobs", params={"status": "running"}).json()["jobs"]
    assert [j["job_id"] for j in running] == [second.job_id]


def test_jobs_bad_query_is_400_with_field_errors(admin) -> None:
    response = admin.get(f"{API}/jobs", params={"status": "DONE"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "status"
    response = admin.get(f"{API}/jobs", params={"limit": "many"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "limit"
    response = admin.get(f"{API}/jobs", params={"cursor": "page-2"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "cursor"


def test_unknown_job_is_404(admin) -> None:
    for path in (
        "/jobs/job-nope",
        f"/jobs/job-nope/repositories/{BILLING}",
        f"/jobs/job-nope/repositories/{BILLING}/diff",
        f"/jobs/job-nope/repositories/{BILLING}/claude-thread",
    ):
        response = admin.get(API + path)
        assert response.status_code == 404, path
        assert "job-nope" in response.json()["detail"]
    assert admin.post(f"{API}/jobs/job-nope/cancel").status_code == 404


def test_job_detail_has_results(admin, store) -> None:
    job = seed_job(store)
    data = admin.get(f"{API}/jobs/{job.job_id}").json()
    assert data["status"] == "COMPLETED" and data["finished"] is True
    assert [r["repository"] for r in data["results"]] == job.repositories
    assert data["results"][0]["summary"].startswith("Replaced one call")
    assert data["counts"]["changed"] == 1


def test_repository_result_diff_and_thread(admin, store) -> None:
    job = seed_job(store)
    base = f"{API}/jobs/{job.job_id}/repositories"
    for name in (BILLING, quote("acme/billing", safe=""), "acme/billing"):
        result = admin.get(f"{base}/{name}")
        assert result.status_code == 200, name
        assert result.json()["repository"] == "github.com/acme/billing"
    diff = admin.get(f"{base}/{BILLING}/diff")
    assert diff.status_code == 200
    assert diff.headers["content-type"].startswith("text/x-diff")
    assert diff.content == PATCH
    thread = admin.get(f"{base}/{BILLING}/claude-thread")
    assert thread.status_code == 200 and thread.json() == THREAD

    web = quote("github.com/acme/web", safe="")
    assert admin.get(f"{base}/{web}/diff").status_code == 404  # failed: no patch recorded
    assert admin.get(f"{base}/{web}/claude-thread").status_code == 404
    assert admin.get(f"{base}/{quote('acme/other', safe='')}").status_code == 404


def test_a_repository_named_like_a_route_still_resolves(admin, store) -> None:
    job = seed_job(store, repositories=("github.com/acme/diff", "github.com/acme/web"))
    response = admin.get(f"{API}/jobs/{job.job_id}/repositories/github.com/acme/diff")
    assert response.status_code == 200
    assert response.json()["repository"] == "github.com/acme/diff"
    patch = admin.get(f"{API}/jobs/{job.job_id}/repositories/github.com/acme/diff/diff")
    assert patch.content == PATCH


def test_create_job_400_lists_every_field_error(admin) -> None:
    response = admin.post(
        f"{API}/jobs",
        json={
            "repositories": [f"acme/r{i}" for i in range(6)],
            "max_turns": 0,
            "colour": "blue",
        },
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"name", "prompt", "repositories", "max_turns", "colour"} <= fields


def test_create_job_needs_a_json_object(admin) -> None:
    response = admin.post(f"{API}/jobs", json=["not", "an", "object"])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "spec"
    response = admin.post(
        f"{API}/jobs", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_create_job_triggers_a_run_and_registers_the_job(admin, store, local_repos) -> None:
    response = admin.post(f"{API}/jobs", json=_job_body(local_repos))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["job_id"] == job_id_for_run("codybatch_job", created["run_id"])
    assert created["url"] == f"/codybatch/jobs/{created['job_id']}"
    assert run_state("codybatch_job", created["run_id"]) in ("queued", "running")

    job = store.get_job(created["job_id"])
    assert job is not None and job.status == JobStatus.PENDING
    assert job.run_id == created["run_id"]
    assert job.repositories == local_repos
    detail = admin.get(f"{API}/jobs/{created['job_id']}").json()
    assert [r["status"] for r in detail["results"]] == ["PENDING", "PENDING"]
    assert _run_conf(created["run_id"])["repositories"] == local_repos


def _run_conf(run_id: str) -> dict:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(DagRun.conf).where(DagRun.run_id == run_id))


def test_a_viewer_may_read_but_not_change(client, tokens, store, local_repos) -> None:
    job = seed_job(store, status=JobStatus.RUNNING)
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert client.get(f"{API}/jobs/{job.job_id}", headers=viewer).status_code == 200
    response = client.post(f"{API}/jobs", json=_job_body(local_repos), headers=viewer)
    assert response.status_code == 403
    assert client.post(f"{API}/jobs/{job.job_id}/cancel", headers=viewer).status_code == 403
    assert store.get_job(job.job_id).status == JobStatus.RUNNING


def test_cookie_callers_need_the_csrf_token(client, tokens, local_repos) -> None:
    client.cookies.set("_token", tokens["admin"])
    assert client.get(f"{API}/jobs").status_code == 200
    response = client.post(f"{API}/jobs", json=_job_body(local_repos))
    assert response.status_code == 403
    assert "X-CSRF-Token" in response.json()["detail"]
    response = client.post(
        f"{API}/jobs", json=_job_body(local_repos), headers={"X-CSRF-Token": csrf_of(client)}
    )
    assert response.status_code == 201, response.text


def test_cancel_fails_the_run_and_cancels_open_repositories(admin, store, local_repos) -> None:
    created = admin.post(f"{API}/jobs", json=_job_body(local_repos)).json()
    job_id = created["job_id"]
    # One repository already finished before the cancel: it keeps its result.
    done = store.get_result(job_id, local_repos[0])
    done.status = RepositoryStatus.COMPLETED
    store.save_result(done)

    response = admin.post(f"{API}/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["status"] == "CANCELLED"
    assert [r["status"] for r in data["results"]] == ["COMPLETED", "CANCELLED"]
    assert run_state("codybatch_job", created["run_id"]) == "failed"

    again = admin.post(f"{API}/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "already finished (CANCELLED)" in again.json()["detail"]


def test_cancel_of_a_finished_job_is_409(admin, store) -> None:
    job = seed_job(store, status=JobStatus.COMPLETED)
    response = admin.post(f"{API}/jobs/{job.job_id}/cancel")
    assert response.status_code == 409
    assert "nothing to cancel" in response.json()["detail"]
    assert store.get_job(job.job_id).status == JobStatus.COMPLETED


def test_cancel_of_a_job_whose_run_is_gone_still_cancels(admin, store) -> None:
    job = seed_job(store, status=JobStatus.RUNNING, run_id="never_triggered")
    response = admin.post(f"{API}/jobs/{job.job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"


def test_publish_refuses_what_cannot_be_published(admin, store, tokens, client) -> None:
    job = seed_job(store)
    web = quote("github.com/acme/web", safe="")
    response = admin.post(f"{API}/jobs/{job.job_id}/repositories/{web}/publish")
    assert response.status_code == 409  # failed, no patch
    admin.headers.pop("Authorization")
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    response = client.post(
        f"{API}/jobs/{job.job_id}/repositories/{BILLING}/publish", headers=viewer
    )
    assert response.status_code == 403


def test_repositories_lists_allowlist_literals_and_local_repos(
    admin, store, local_repos, monkeypatch
) -> None:
    monkeypatch.setenv(
        "CODYBATCH_ALLOWED_REPOSITORIES", f"acme/billing,acme/*,{Path(local_repos[0]).parent}/*"
    )
    seed_job(store, repositories=tuple(local_repos))
    data = admin.get(f"{API}/repositories").json()
    assert data["source"] == "allowlist"
    assert data["repositories"] == sorted(["github.com/acme/billing", *local_repos])


def test_no_secret_is_returned(admin, store, monkeypatch) -> None:
    secret = "ghp_S3cretValueThatMustNotShow"
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    monkeypatch.setenv("CODYBATCH_ALLOWED_REPOSITORIES", "acme/billing")
    job = seed_job(store)
    result = store.get_result(job.job_id, "github.com/acme/billing")
    result.summary = f"used {secret}"
    store.save_result(result)
    store.put_patch(job.job_id, result.repository, f"+token {secret}\n".encode())
    base = f"{API}/jobs/{job.job_id}"
    for path in ("", f"/repositories/{BILLING}", f"/repositories/{BILLING}/diff"):
        response = admin.get(base + path)
        assert response.status_code == 200
        assert secret not in response.text and "[REDACTED]" in response.text
