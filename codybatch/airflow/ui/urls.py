"""URLs into the Airflow UI, built from Airflow's `[api] base_url` (it may carry a path)."""

from __future__ import annotations

from functools import cache
from urllib.parse import urlsplit


@cache
def airflow_root() -> str:
    """The path the Airflow UI is served under: '' at the root, '/airflow' behind a proxy."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base_url).path.rstrip("/")
