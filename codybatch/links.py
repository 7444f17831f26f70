"""Links to the Cody Batch pages from outside the UI (PR bodies, approval requests): the
deployment's public URL (CODYBATCH_PUBLIC_URL: Airflow's base URL, with any path) plus the
plugin's mount. The pages build their own links from the same mount (airflow/ui/urls.py)."""

from __future__ import annotations

from urllib.parse import quote

MOUNT = "/codybatch"  # the plugin's url_prefix


def page_url(public_url: str, path: str) -> str | None:
    """e.g. page_url('https://ops.example/airflow/', '/jobs/j1') ->
    'https://ops.example/airflow/codybatch/jobs/j1'; None without a public URL."""
    return f"{public_url.rstrip('/')}{MOUNT}{path}" if public_url else None


def job_url(public_url: str, job_id: str, *parts: str) -> str | None:
    """A job's page, or one of its pages (e.g. 'diff', repository), each part URL-encoded."""
    return page_url(public_url, "/" + "/".join(quote(p, safe="") for p in ("jobs", job_id, *parts)))
