"""What only the AWS store does: DynamoDB items, TTL, S3 spill of large patches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from codybatch.cli import main
from codybatch.records import Job, JobStatus, RepositoryStatus
from codybatch.settings import Settings
from codybatch.store import JobCursor, open_store
from codybatch.store.aws import (
    INLINE_PATCH_LIMIT,
    AwsStore,
    _job_item,
    _serialize,
    table_definitions,
)
from tests.fakes import aws as fake_aws

REPOSITORY = "github.com/acme/widgets"
PATCH_KEY = f"jobs/job-1/{quote(REPOSITORY, safe='')}/patch.diff"
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def job(aws_store: AwsStore) -> Job:
    spec = {"name": "n", "repositories": [REPOSITORY, "github.com/acme/b"], "max_usd": 2.5}
    return aws_store.create_job(Job(job_id="job-1", spec=spec))


def raw_result(store: AwsStore, repository: str = REPOSITORY) -> dict:
    key = {"jobId": {"S": "job-1"}, "repositoryName": {"S": repository}}
    return store.dynamodb.get_item(TableName=store.repositories_table, Key=key)["Item"]


def s3_keys(store: AwsStore) -> list[str]:
    listing = store.s3.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_open_store_takes_names_from_the_environment(aws_env: dict[str, str]) -> None:
    env = aws_env | {
        "CODYBATCH_STORE": "aws",
        "DYNAMODB_JOBS_TABLE": "seed-jobs",
        "DYNAMODB_REPOSITORIES_TABLE": "seed-repositories",
        "CODYBATCH_BUCKET": "my-bucket",
    }
    store = open_store(Settings.from_env(env))
    assert isinstance(store, AwsStore)
    assert (store.jobs_table, store.repositories_table, store.bucket) == (
        "seed-jobs",
        "seed-repositories",
        "my-bucket",
    )
    assert store.dynamodb.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]
    assert store.s3.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]


def test_every_item_carries_the_ttl_in_epoch_seconds(aws_store: AwsStore, job: Job) -> None:
    result = aws_store.get_result("job-1", REPOSITORY)
    result.status = RepositoryStatus.COMPLETED
    aws_store.save_result(result)
    aws_store.put_patch("job-1", REPOSITORY, b"+x\n")
    aws_store.update_job("job-1", error="e")

    items = [
        *aws_store.dynamodb.scan(TableName=aws_store.jobs_table)["Items"],
        *aws_store.dynamodb.scan(TableName=aws_store.repositories_table)["Items"],
    ]
    assert len(items) == 3
    assert {item["expiresAt"]["N"] for item in items} == {str(int(job.expires_at.timestamp()))}
    for table in (aws_store.jobs_table, aws_store.repositories_table):
        ttl = aws_store.dynamodb.describe_time_to_live(TableName=table)
        assert ttl["TimeToLiveDescription"] == {
            "TimeToLiveStatus": "ENABLED",
            "AttributeName": "expiresAt",
        }


def test_items_use_the_seed_attribute_names_and_decimal_numbers(
    aws_store: AwsStore, job: Job
) -> None:
    item = aws_store.dynamodb.get_item(
        TableName=aws_store.jobs_table, Key={"jobId": {"S": "job-1"}}
    )["Item"]
    assert item["status"] == {"S": "PENDING"}
    assert item["spec"]["M"]["max_usd"] == {"N": "2.5"}
    assert item["createdAt"]["S"].endswith("+00:00")
    assert set(raw_result(aws_store)) >= {"jobId", "repositoryName", "status", "revision"}


def test_a_small_patch_stays_inline_and_a_large_one_goes_to_s3(
    aws_store: AwsStore, job: Job
) -> None:
    small = b"+small\x00\xff\n"
    aws_store.put_patch("job-1", REPOSITORY, small)
    assert raw_result(aws_store)["diff"] == {"B": small}
    assert s3_keys(aws_store) == []

    large = bytes(range(256)) * ((INLINE_PATCH_LIMIT // 256) + 1)
    aws_store.put_patch("job-1", REPOSITORY, large)
    item = raw_result(aws_store)
    assert "diff" not in item and item["diffS3Key"] == {"S": PATCH_KEY}
    assert s3_keys(aws_store) == [PATCH_KEY]
    assert aws_store.s3.get_object(Bucket=aws_store.bucket, Key=PATCH_KEY)["Body"].read() == large
    assert aws_store.get_patch("job-1", REPOSITORY) == large

    aws_store.put_patch("job-1", REPOSITORY, small)
    assert s3_keys(aws_store) == []
    assert aws_store.get_patch("job-1", REPOSITORY) == small


def test_a_record_that_outgrows_its_inline_patch_moves_the_patch_to_s3(
    aws_store: AwsStore, job: Job
) -> None:
    patch = b"+" * (INLINE_PATCH_LIMIT - 10)
    aws_store.put_patch("job-1", REPOSITORY, patch)
    result = aws_store.get_result("job-1", REPOSITORY)
    result.summary = "x" * 150_000  # record + inline patch would pass 400 KB

    aws_store.save_result(result)

    assert aws_store.get_result("job-1", REPOSITORY) == result
    assert aws_store.get_patch("job-1", REPOSITORY) == patch
    assert s3_keys(aws_store) == [PATCH_KEY]


def test_a_patch_too_big_beside_its_record_goes_to_s3(aws_store: AwsStore, job: Job) -> None:
    result = aws_store.get_result("job-1", REPOSITORY)
    result.summary = "x" * 150_000
    aws_store.save_result(result)
    patch = b"-" * (INLINE_PATCH_LIMIT - 10)

    aws_store.put_patch("job-1", REPOSITORY, patch)

    assert s3_keys(aws_store) == [PATCH_KEY]
    assert aws_store.get_patch("job-1", REPOSITORY) == patch


def test_threads_live_in_s3_with_a_pointer_on_the_record(aws_store: AwsStore, job: Job) -> None:
    aws_store.put_thread("job-1", REPOSITORY, {"messages": [{"role": "user", "content": "hi"}]})
    key = f"jobs/job-1/{quote(REPOSITORY, safe='')}/thread.json"
    assert s3_keys(aws_store) == [key]
    assert raw_result(aws_store)["threadS3Key"] == {"S": key}
    assert raw_result(aws_store)["revision"] == {"N": "0"}


def test_create_resources_is_idempotent_and_builds_the_indexes(aws_store: AwsStore) -> None:
    aws_store.create_resources()
    jobs = boto3.client("dynamodb").describe_table(TableName=aws_store.jobs_table)["Table"]
    assert [i["IndexName"] for i in jobs["GlobalSecondaryIndexes"]] == [
        "status-createdAt-index",
        "campaign-createdAt-index",
    ]
    results = boto3.client("dynamodb").describe_table(TableName=aws_store.repositories_table)
    indexes = [i["IndexName"] for i in results["Table"]["GlobalSecondaryIndexes"]]
    assert indexes == ["status-index", "fleet-status-index", "prState-createdAt-index"]


# queries: the list pages read indexes, never scan


@pytest.fixture
def calls(aws_store: AwsStore) -> list[tuple[str, dict]]:
    """Every DynamoDB call the store's (real boto3) client makes, by botocore's event hook."""
    seen: list[tuple[str, dict]] = []

    def record(params: dict, model: Any, **_: Any) -> None:
        seen.append((model.name, params))

    aws_store.dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    return seen


def campaign_job(job_id: str, minutes: int, campaign: str | None) -> Job:
    spec = {"name": job_id, "repositories": [REPOSITORY], "max_usd": 1.0}
    if campaign:
        spec["campaign"] = campaign
    created = T0 + timedelta(minutes=minutes)
    return Job(job_id=job_id, spec=spec, created_at=created, updated_at=created)


def test_list_queries_use_the_indexes_and_never_scan(
    aws_store: AwsStore, calls: list[tuple[str, dict]]
) -> None:
    for i in range(6):
        aws_store.create_job(campaign_job(f"job-{i}", i, "weekly" if i % 2 else None))
    result = aws_store.get_result("job-1", REPOSITORY)
    result.pr_number, result.pr_state = 3, "open"
    aws_store.save_result(result)
    calls.clear()

    newest = aws_store.list_jobs(limit=2)
    older = aws_store.list_jobs(limit=2, before=JobCursor.of(newest[-1]))
    pending = aws_store.list_jobs(JobStatus.PENDING, since=T0)
    weekly = aws_store.campaign_jobs("weekly")
    campaigns = aws_store.campaigns()
    live = aws_store.results_with_pr_state("open")

    assert [j.job_id for j in newest + older] == ["job-5", "job-4", "job-3", "job-2"]
    assert len(pending) == 6 and [j.job_id for j in weekly] == ["job-5", "job-3", "job-1"]
    assert campaigns == {"weekly": {None: 3}} and [(r.job_id, r.pr_number) for r in live] == [
        ("job-1", 3)
    ]
    assert [name for name, _ in calls if name != "Query"] == []  # no Scan, no GetItem loop
    indexes = {params.get("IndexName") for _, params in calls}
    assert indexes == {
        "status-createdAt-index",
        "campaign-createdAt-index",
        "prState-createdAt-index",
        None,  # the campaigns registry: one partition of the repositories table
    }
    registry = [p for _, p in calls if "IndexName" not in p]
    assert all(p["TableName"] == aws_store.repositories_table for p in registry)
    pages = [p for _, p in calls if p.get("IndexName") == "status-createdAt-index"]
    assert {p["Limit"] for p in pages} == {3, 51}  # a page reads about a page, not the table


def test_tables_from_before_the_indexes_get_them_and_migrate_backfills(
    aws_env: dict[str, str],
) -> None:
    store = AwsStore.from_settings(Settings.from_env(aws_env | fake_aws.unique_names()))
    # The tables as the previous release created them: no campaign or PR state index.
    for table in table_definitions(store.jobs_table, store.repositories_table):
        table["GlobalSecondaryIndexes"] = [
            i
            for i in table["GlobalSecondaryIndexes"]
            if i["IndexName"] not in ("campaign-createdAt-index", "prState-createdAt-index")
        ]
        keys = [
            *table["KeySchema"],
            *(k for i in table["GlobalSecondaryIndexes"] for k in i["KeySchema"]),
        ]
        used = {k["AttributeName"] for k in keys}
        table["AttributeDefinitions"] = [
            a for a in table["AttributeDefinitions"] if a["AttributeName"] in used
        ]
        store.dynamodb.create_table(**table)
    old = campaign_job("job-old", 1, "weekly")
    item = _job_item(old)
    del item["campaign"]  # written before the attribute existed
    store.dynamodb.put_item(TableName=store.jobs_table, Item=_serialize(item))
    store.create_resources()  # adds the missing indexes to the existing tables
    store.create_job(campaign_job("job-new", 2, "weekly"))
    store.create_job(campaign_job("job-none", 3, None))

    assert [j.job_id for j in store.campaign_jobs("weekly")] == ["job-new"]
    assert store.migrate() == 1
    assert [j.job_id for j in store.campaign_jobs("weekly")] == ["job-new", "job-old"]
    assert store.campaigns() == {"weekly": {None: 2}}
    assert store.get_job("job-old") == old
    assert store.migrate() == 0  # once only


def test_codybatch_store_migrate_backfills_the_store_the_environment_names(
    aws_store_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = AwsStore.from_settings(Settings.from_env(aws_store_env))
    item = _job_item(campaign_job("job-old", 1, "nightly"))
    del item["campaign"]
    store.dynamodb.put_item(TableName=store.jobs_table, Item=_serialize(item))
    for name, value in aws_store_env.items():
        monkeypatch.setenv(name, value)

    assert main(["store", "migrate"]) == 0
    assert (
        capsys.readouterr().out == "migrated 1 records written before the store's current indexes\n"
    )
    assert [j.job_id for j in store.campaign_jobs("nightly")] == ["job-old"]
    assert main(["store", "migrate"]) == 0
    assert capsys.readouterr().out.startswith("migrated 0 ")
