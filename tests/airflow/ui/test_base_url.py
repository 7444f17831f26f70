"""Every URL of the pages comes from Airflow's `[api] base_url` and the plugin's mount, so the
pages work behind a proxy that serves Airflow under a path (here /airflow/)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from codybatch.records import JobStatus
from tests.airflow.ui.seed import seed_job

pytestmark = pytest.mark.airflow

BASE = "/airflow"


@pytest.fixture
def behind_a_proxy(airflow_app, tokens, codybatch_home, monkeypatch):
    """The plugin app mounted as Airflow mounts it, under an api-server app whose base_url
    has a path (Airflow sets that app's root_path from it)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from codybatch.airflow.ui import create_app

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", f"http://localhost:8080{BASE}/")
    server = FastAPI(root_path=BASE)
    server.mount("/codybatch", create_app())
    with TestClient(server, base_url="http://localhost:8080", follow_redirects=False) as client:
        client.cookies.set("_token", tokens["admin"])
        yield client


def _links(html: str) -> list[str]:
    return re.findall(r'(?:href|src|action|data-poll)="(/[^"]*)"', html)


def test_every_link_carries_the_base_path(behind_a_proxy, store) -> None:
    job = seed_job(store, name="Behind a proxy")
    seed_job(store, name="Still going", status=JobStatus.RUNNING)
    billing = quote("github.com/acme/billing", safe="")
    pages = [
        "/",
        f"/jobs/{job.job_id}",
        f"/jobs/{job.job_id}/diff/{billing}",
        f"/jobs/{job.job_id}/thread/{billing}",
        "/jobs/new",
        "/campaigns",
    ]
    for page in pages:
        response = behind_a_proxy.get(f"{BASE}/codybatch{page}")
        assert response.status_code == 200, (page, response.text[:300])
        links = _links(response.text)
        assert links, page
        outside = [link for link in links if not link.startswith(f"{BASE}/")]
        assert outside == [], page
    job_page = behind_a_proxy.get(f"{BASE}/codybatch/jobs/{job.job_id}").text
    assert f'href="{BASE}/codybatch/static/codybatch.css"' in job_page
    run = f"{BASE}/dags/codybatch_job/runs/{quote(job.run_id, safe='')}"
    assert f'href="{run}"' in job_page  # the DAG run, in the Airflow UI
    assert f'href="{run}/tasks/process/mapped/0"' in job_page  # a repository's task log


def test_redirects_and_the_api_docs_carry_the_base_path(behind_a_proxy, store) -> None:
    job = seed_job(store, name="Behind a proxy")
    results = behind_a_proxy.get(f"{BASE}/codybatch/runs/codybatch_job/{job.run_id}")
    assert results.status_code == 303
    assert results.headers["location"] == f"{BASE}/codybatch/jobs/{job.job_id}"

    docs = behind_a_proxy.get(f"{BASE}/codybatch/docs")
    assert docs.status_code == 200
    assert f"'{BASE}/codybatch/openapi.json'" in docs.text
    assets = _links(docs.text)
    assert assets and all(a.startswith(f"{BASE}/codybatch/static/swagger-ui/") for a in assets)
    assert behind_a_proxy.get(assets[0]).status_code == 200
