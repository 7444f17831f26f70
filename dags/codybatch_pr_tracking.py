"""Refreshes the pull requests Cody Batch opened (logic in codybatch.airflow.tracking)."""

from codybatch.airflow.tracking import build_tracking_dag

dag = build_tracking_dag()
