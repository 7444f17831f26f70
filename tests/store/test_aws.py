"""What only the AWS store does: DynamoDB items, TTL, S3 spill of large patches."""

from __future__ import annotations

from urllib.parse import quote

import boto3
import pytest

from codybatch.records import Job, RepositoryStatus
from codybatch.settings import Settings
from codybatch.store import open_store
from codybatch.store.aws import INLINE_PATCH_LIMIT, AwsStore

REPOSITORY = "github.com/acme/widgets"
PATCH_KEY = f"jobs/job-1/{quote(REPOSITORY, safe='')}/patch.diff"


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
    assert [i["IndexName"] for i in jobs["GlobalSecondaryIndexes"]] == ["status-createdAt-index"]
    results = boto3.client("dynamodb").describe_table(TableName=aws_store.repositories_table)
    indexes = [i["IndexName"] for i in results["Table"]["GlobalSecondaryIndexes"]]
    assert indexes == ["status-index", "fleet-status-index"]
