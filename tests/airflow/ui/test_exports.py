"""CSV exports of the jobs list and of one job (?format=csv), and the pages' download links."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from codybatch.records import JobStatus
from tests.airflow.ui.seed import XSS, seed_campaign_run, seed_job

pytestmark = pytest.mark.airflow

API = "/codybatch/api/v1"
BILLING, WEB = "github.com/acme/billing", "github.com/acme/web"


def _rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text)))


def _filename(response) -> str:
    found = re.fullmatch(
        r'attachment; filename="([A-Za-z0-9._-]+)"', response.headers["content-disposition"]
    )
    assert found, response.headers["content-disposition"]
    return found.group(1)


def test_jobs_csv_one_row_per_job_filtered_and_paginated(admin, store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    first = seed_job(store, name="first", created_at=now - timedelta(hours=2))
    second = seed_job(store, "second", JobStatus.RUNNING, created_at=now - timedelta(hours=1))
    third = seed_campaign_run(store, "upgrade_legacy", now, {BILLING: "open", WEB: "clean"})

    response = admin.get(f"{API}/jobs", params={"format": "csv"})
    rows = _rows(response)
    assert _filename(response) == "codybatch-jobs.csv"
    assert [r["job_id"] for r in rows] == [third.job_id, second.job_id, first.job_id]
    by_id = {r["job_id"]: r for r in rows}
    assert by_id[first.job_id]["name"] == "first"
    assert by_id[first.job_id]["status"] == "COMPLETED"
    assert (by_id[first.job_id]["changed"], by_id[first.job_id]["failed"]) == ("1", "1")
    assert by_id[first.job_id]["total_tokens"] == "3920"
    assert by_id[third.job_id]["campaign"] == "upgrade_legacy"
    assert by_id[first.job_id]["campaign"] == ""

    running = admin.get(f"{API}/jobs", params={"format": "csv", "status": "running"})
    assert [r["job_id"] for r in _rows(running)] == [second.job_id]
    assert _filename(running) == "codybatch-jobs-running.csv"

    page = admin.get(f"{API}/jobs", params={"format": "csv", "limit": 1, "offset": 1})
    assert [r["job_id"] for r in _rows(page)] == [second.job_id]

    empty = admin.get(f"{API}/jobs", params={"format": "csv", "status": "cancelled"})
    assert _rows(empty) == [] and empty.text.startswith("job_id,name,status,")


def test_job_csv_one_row_per_repository_with_pull_request_states(admin, store) -> None:
    run = seed_campaign_run(
        store, "upgrade_legacy", datetime(2026, 3, 2, tzinfo=UTC), {BILLING: "open", WEB: "patch"}
    )
    response = admin.get(f"{API}/jobs/{run.job_id}", params={"format": "csv"})
    rows = _rows(response)
    assert _filename(response) == f"{run.job_id}.csv"
    assert [r["repository"] for r in rows] == [BILLING, WEB]
    billing, web = rows
    assert billing["job_id"] == run.job_id and billing["job_name"] == "Upgrade legacy-lib"
    assert (billing["pr_state"], billing["checks"], billing["review"]) == (
        "open",
        "success",
        "approved",
    )
    assert billing["pr_url"] == "https://github.com/acme/billing/pull/1"
    assert billing["pr_number"] == "1" and billing["were_changes_necessary"] == "True"
    assert (web["pr_state"], web["pr_url"], web["status"]) == ("", "", "COMPLETED")

    assert admin.get(f"{API}/jobs/job-nope", params={"format": "csv"}).status_code == 404
    bad = admin.get(f"{API}/jobs/{run.job_id}", params={"format": "xml"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "format"


def test_csv_cells_are_text_not_markup_formulas_or_secrets(admin, store, monkeypatch) -> None:
    secret = "ghp_S3cretValueThatMustNotShow"
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    job = seed_job(store, name=f"Fix {XSS}")
    result = store.get_result(job.job_id, BILLING)
    result.summary = f'=HYPERLINK("http://evil") used {secret}, then "quoted",\nand a new line'
    store.save_result(result)

    billing = _rows(admin.get(f"{API}/jobs/{job.job_id}", params={"format": "csv"}))[0]
    assert billing["job_name"] == f"Fix {XSS}"  # CSV is data: nothing to escape but quotes
    assert billing["summary"].startswith("'=HYPERLINK(")  # not a spreadsheet formula
    assert secret not in billing["summary"] and "[REDACTED]" in billing["summary"]
    assert billing["summary"].endswith('then "quoted",\nand a new line')
    listing = admin.get(f"{API}/jobs", params={"format": "csv"})
    assert secret not in listing.text and _rows(listing)[0]["name"] == f"Fix {XSS}"


def test_json_stays_the_default(admin, store) -> None:
    job = seed_job(store)
    assert admin.get(f"{API}/jobs").json()["jobs"][0]["job_id"] == job.job_id
    assert admin.get(f"{API}/jobs", params={"format": "json"}).json()["jobs"]
    assert admin.get(f"{API}/jobs/{job.job_id}").json()["job_id"] == job.job_id


def test_cookie_users_download_from_the_pages_links(client, tokens, store) -> None:
    client.cookies.set("_token", tokens["viewer"])  # reading needs no more than a viewer
    job = seed_job(store, status=JobStatus.RUNNING)
    listing = client.get("/codybatch/", params={"status": "RUNNING", "page": 1})
    link = re.search(r'href="([^"]*format=csv[^"]*)"[^>]*>Download CSV', listing.text)
    assert link, "no Download CSV link on the jobs page"
    url = link.group(1).replace("&amp;", "&")
    assert url.startswith(f"{API}/jobs?") and "status=RUNNING" in url and "offset=0" in url
    assert [r["job_id"] for r in _rows(client.get(url))] == [job.job_id]

    page = client.get(f"/codybatch/jobs/{job.job_id}")
    link = re.search(r'href="([^"]*format=csv)"[^>]*>Download CSV', page.text)
    assert link and len(_rows(client.get(link.group(1)))) == 2
