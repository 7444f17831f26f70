"""Where Airflow runs, every AWS call uses the Airflow connection (moto behind it, over HTTP);
the worker, without Airflow, keeps boto3's default chain."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from codybatch import store as core_store
from codybatch.airflow import aws
from codybatch.records import Job
from codybatch.settings import Settings
from tests.airflow.ui.conftest import (  # noqa: F401  (fixtures)
    admin,
    airflow_app,
    client,
    session_client,
    tokens,
)
from tests.fakes.aws import REGION, aws_env, moto_endpoint, unique_names

__all__ = ["aws_env", "moto_endpoint"]

CONN_ID = "codybatch_aws"


@pytest.fixture
def connection_only(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """moto reachable only through the Airflow connection: no endpoint or keys in the
    environment, no config files; returns the CODYBATCH_* variables of a fresh AWS store."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AIRFLOW_CONN_AWS_DEFAULT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    connection = {
        "conn_type": "aws",
        "login": "conn-key-id",
        "password": "conn-secret",
        "extra": {"endpoint_url": moto_endpoint, "region_name": REGION},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    env = unique_names() | {"CODYBATCH_AWS_CONN_ID": CONN_ID, "AWS_REGION": REGION}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _moto(service: str, endpoint: str) -> object:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def test_the_airflow_store_talks_to_what_the_connection_names(
    connection_only: dict[str, str],
    moto_endpoint: str,
) -> None:
    settings = Settings.from_env(connection_only)
    store = aws.open_store(settings)
    assert store.dynamodb.meta.endpoint_url == moto_endpoint
    assert store.s3.meta.endpoint_url == moto_endpoint
    assert store.dynamodb._request_signer._credentials.access_key == "conn-key-id"

    store.create_resources()
    store.create_job(Job(job_id="job-conn", spec={"name": "n", "repositories": ["a/b"]}))
    item = _moto("dynamodb", moto_endpoint).get_item(
        TableName=settings.jobs_table, Key={"jobId": {"S": "job-conn"}}
    )
    assert item["Item"]["jobId"] == {"S": "job-conn"}  # really written to moto, by HTTP
    buckets = [b["Name"] for b in _moto("s3", moto_endpoint).list_buckets()["Buckets"]]
    assert settings.bucket in buckets

    # The worker has no Airflow: boto3's default chain, never the connection.
    worker = core_store.open_store(settings)
    assert worker.dynamodb.meta.endpoint_url != moto_endpoint
    assert "amazonaws.com" in worker.dynamodb.meta.endpoint_url


def test_without_the_connection_the_default_chain_applies(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    settings = Settings.from_env(aws_env | unique_names())
    store = aws.open_store(settings)
    assert store.dynamodb.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]  # AWS_ENDPOINT_URL
    assert aws.open_store(Settings.from_env({"CODYBATCH_HOME": "/tmp/x"})).__class__.__name__ == (
        "LocalStore"
    )


def test_the_plugin_reads_jobs_through_the_connection(
    connection_only: dict[str, str],
    admin,  # noqa: F811
    codybatch_home: Path,
) -> None:
    store = aws.open_store(Settings.from_env())
    store.create_resources()
    store.create_job(Job(job_id="job-ui-conn", spec={"name": "via conn", "repositories": ["a/b"]}))

    response = admin.get("/codybatch/api/v1/jobs/job-ui-conn")
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == "job-ui-conn"
    assert "via conn" in response.text


def test_the_batch_operator_and_finalize_use_the_configured_connection(
    connection_only: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from codybatch.airflow.batch import terminate_batch_jobs
    from codybatch.airflow.dag import build_job_dag

    monkeypatch.setenv("CODYBATCH_RUNNER", "batch")
    dag = build_job_dag()
    assert dag.get_task("process").partial_kwargs["aws_conn_id"] == CONN_ID

    # finalize's clean-up lists the queue's jobs through the connection: moto answers (AWS
    # itself is unreachable from here, so moto's answer proves which endpoint was asked).
    settings = Settings.from_env()
    with pytest.raises(ClientError, match=f"Job queue {settings.batch_job_queue} does not exist"):
        terminate_batch_jobs("job-none", settings)


def test_the_plugin_picks_up_a_rotated_connection_within_minutes(
    connection_only: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from codybatch.airflow.ui import actions

    clock = SimpleNamespace(now=1_000_000.0)
    monkeypatch.setattr(actions, "time", SimpleNamespace(monotonic=lambda: clock.now))
    settings = Settings.from_env(connection_only)

    def key() -> str:
        return actions.store(settings).dynamodb._request_signer._credentials.access_key

    assert key() == "conn-key-id"
    rotated = json.loads(os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"])
    rotated["login"] = "rotated-key-id"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(rotated))
    assert key() == "conn-key-id"  # one store (and session) serves requests meanwhile
    clock.now += actions.STORE_REOPEN_SECONDS
    assert key() == "rotated-key-id"
