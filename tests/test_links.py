"""Links to the pages from PR bodies and approval requests keep the public URL's path."""

from __future__ import annotations

from codybatch.links import job_url, page_url


def test_links_keep_the_path_of_the_public_url() -> None:
    assert job_url("https://ops.example/airflow/", "job-1") == (
        "https://ops.example/airflow/codybatch/jobs/job-1"
    )
    assert job_url("http://localhost:8080", "job-1", "diff", "github.com/acme/web") == (
        "http://localhost:8080/codybatch/jobs/job-1/diff/github.com%2Facme%2Fweb"
    )
    assert page_url("", "/jobs/job-1") is None  # no public URL: the caller says what to run
