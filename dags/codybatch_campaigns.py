"""Keeps one DAG file per campaign in dags/campaigns/ (see codybatch.airflow.campaigns)."""

from codybatch.airflow.campaigns import sync_campaign_stubs

sync_campaign_stubs()
