"""Every URL the pages link to, built from Airflow's `[api] base_url` (it may carry a path)
and the plugin's mount: the one place that knows either."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from codybatch.links import MOUNT  # the plugin's url_prefix (plugins/codybatch_plugin.py)

__all__ = ["MOUNT", "airflow_root", "airflow_url", "app_url", "dag_run_url", "dag_url", "task_url"]


def _q(value: str) -> str:
    return quote(str(value), safe="")


def airflow_root() -> str:
    """The path the Airflow UI is served under: '' at the root, '/airflow' behind a proxy."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base_url).path.rstrip("/")


def app_url(path: str = "") -> str:
    """A path of this plugin's app, e.g. app_url('/jobs/j1') -> '/airflow/codybatch/jobs/j1'."""
    return f"{airflow_root()}{MOUNT}{path}"


def airflow_url(path: str = "/") -> str:
    """A page of the Airflow UI itself, e.g. airflow_url('/dags/d') -> '/airflow/dags/d'."""
    return f"{airflow_root()}{path}"


def dag_url(dag_id: str) -> str:
    return airflow_url(f"/dags/{_q(dag_id)}")


def dag_run_url(dag_id: str, run_id: str) -> str:
    return airflow_url(f"/dags/{_q(dag_id)}/runs/{_q(run_id)}")


def task_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    """A task instance's page (its logs); mapped tasks by their index."""
    url = f"{dag_run_url(dag_id, run_id)}/tasks/{_q(task_id)}"
    return f"{url}/mapped/{map_index}" if map_index is not None else url
