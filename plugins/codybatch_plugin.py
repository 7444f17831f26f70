"""Cody Batch in the Airflow UI: pages and JSON API at /codybatch, a nav entry, a Results tab."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from codybatch.airflow.runend import RunEndListener
from codybatch.airflow.ui import create_app
from codybatch.airflow.ui.urls import MOUNT as PREFIX  # the pages build their URLs from it


class CodyBatchPlugin(AirflowPlugin):
    name = "codybatch"
    # Closes the job of a run a person marks failed or success (no DAG callback runs then).
    listeners = [RunEndListener()]
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "Cody Batch"}]
    # Absolute hrefs and unique url_routes: relative ones break the UI (#53664, #52972).
    external_views = [
        {
            "name": "Cody Batch",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "url_route": "cody-batch",
            "icon": f"{PREFIX}/static/icon.svg",
            "nav_top_level": True,
        },
        {
            "name": "Results",
            "href": f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "cody-batch-results",
        },
    ]
