"""The Cody Batch pages and JSON API, mounted in Airflow's api-server by plugins/."""

from codybatch.airflow.ui.app import create_app

__all__ = ["create_app"]
