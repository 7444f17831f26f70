"""AWS where Airflow runs: every call uses the Amazon provider's connection.

The Batch operator, finalize (stray Batch jobs), the campaign and tracking tasks and the UI
plugin all take credentials, region and endpoints from one Airflow connection
(`CODYBATCH_AWS_CONN_ID`, default `aws_default`); without that connection the provider falls
back to boto3's default chain, as the worker (no Airflow) always does.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from codybatch import store as core_store
from codybatch.settings import Settings
from codybatch.store import Store
from codybatch.store.aws import AwsStore

SERVICES = ("dynamodb", "s3")


def aws_hook(settings: Settings) -> AwsBaseHook:
    """The provider's hook on the configured connection, in the configured region."""
    return AwsBaseHook(aws_conn_id=settings.aws_conn_id, region_name=settings.aws_region)


def open_store(settings: Settings) -> Store:
    """The store the settings select; an AWS store gets its session and endpoints from the
    Airflow connection."""
    if settings.store != "aws":
        return core_store.open_store(settings)
    hook = aws_hook(settings)
    endpoints = {s: hook.conn_config.get_service_endpoint_url(s) for s in SERVICES}
    session = hook.get_session(region_name=settings.aws_region)
    return AwsStore.from_settings(settings, session=session, endpoints=endpoints)
