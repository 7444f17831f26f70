"""The AWS store: DynamoDB for records, S3 for threads and large patches.

Plain boto3 (the worker image has no Airflow). boto3 honours AWS_ENDPOINT_URL, which
points it at moto or LocalStack in tests and docker-compose.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import boto3
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from codybatch.fleet_records import ErrorClass, FleetCounts, FleetEntry, FleetStatus
from codybatch.records import (
    Job,
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    encode,
    utcnow,
)
from codybatch.settings import Settings
from codybatch.store.base import (
    JobCursor,
    NotFoundError,
    StaleWriteError,
    Store,
    StoreError,
    campaign_of,
    newest_first,
)

JOBS_STATUS_INDEX = "status-createdAt-index"
# Jobs of a campaign carry a top-level `campaign` (a copy of spec.campaign) for this index;
# items written before it get it from `codybatch store migrate` (AwsStore.migrate).
JOBS_CAMPAIGN_INDEX = "campaign-createdAt-index"
REPOSITORIES_STATUS_INDEX = "status-index"
# Results with a pull request, by its state (tracking reads the open ones); sparse.
REPOSITORIES_PR_STATE_INDEX = "prState-createdAt-index"
# Every campaign with jobs: one item per campaign under this jobId of the repositories table,
# written with each of its jobs (its expiry that of the campaign's newest job).
CAMPAIGNS_PARTITION = "campaigns#"
# Fleet entries live in the repositories table under jobId "fleet#<campaign>"; this sparse
# index answers "the campaign's repositories of one status" (fleetKey = campaign#STATUS).
FLEET_INDEX = "fleet-status-index"
# DynamoDB items stop at 400 KB; above this a patch goes to S3 (the record needs room too).
INLINE_PATCH_LIMIT = 300 * 1024
_UNKNOWN_POSITION = 1_000_000  # results of repositories not listed in the job sort last

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class AwsStore(Store):
    """Jobs and results in two DynamoDB tables; threads and large patches in one S3 bucket."""

    def __init__(
        self,
        jobs_table: str,
        repositories_table: str,
        bucket: str,
        region: str | None = None,
        session: boto3.session.Session | None = None,
        endpoints: Mapping[str, str | None] | None = None,
    ):
        """`session` and `endpoints` (per service, e.g. {"s3": URL}) come from Airflow's AWS
        connection where Airflow runs; without them, boto3's default chain (the worker)."""
        self.jobs_table = jobs_table
        self.repositories_table = repositories_table
        self.bucket = bucket
        session = session or boto3.session.Session(region_name=region)
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        # Low-level clients: unlike boto3 resources they are safe to share between threads.
        endpoints = endpoints or {}
        self.dynamodb = session.client(
            "dynamodb", region_name=region, config=config, endpoint_url=endpoints.get("dynamodb")
        )
        self.s3 = session.client(
            "s3", region_name=region, config=config, endpoint_url=endpoints.get("s3")
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session: boto3.session.Session | None = None,
        endpoints: Mapping[str, str | None] | None = None,
    ) -> AwsStore:
        return cls(
            settings.jobs_table,
            settings.repositories_table,
            settings.bucket,
            region=settings.aws_region,
            session=session,
            endpoints=endpoints,
        )

    # jobs

    def create_job(self, job: Job) -> Job:
        items = [
            {
                "Put": {
                    "TableName": self.jobs_table,
                    "Item": _serialize(_job_item(job)),
                    "ConditionExpression": "attribute_not_exists(jobId)",
                }
            }
        ]
        for position, result in enumerate(job.pending_results()):
            item = _result_item(result) | {"position": position}
            items.append({"Put": {"TableName": self.repositories_table, "Item": _serialize(item)}})
        try:
            # One transaction: a retried register never finds a job without its results.
            self.dynamodb.transact_write_items(TransactItems=items)
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            stored = self.get_job(job.job_id)
            if stored is None:
                raise StoreError(f"could not create job {job.job_id}: {error}") from error
            job = stored
        # The campaign's registry item, shared by all its jobs, stays out of the transaction:
        # jobs of one campaign register side by side, and DynamoDB cancels transactions that
        # write one item at once (TransactionConflict, which botocore does not retry). A
        # retried register comes here too, so a crash between the two writes heals.
        campaign = campaign_of(job)
        if campaign:
            self._register_campaign(campaign, job)
        return job

    def get_job(self, job_id: str) -> Job | None:
        response = self.dynamodb.get_item(
            TableName=self.jobs_table, Key=_serialize({"jobId": job_id}), ConsistentRead=True
        )
        item = response.get("Item")
        return _job_from_item(_deserialize(item)) if item else None

    def list_jobs(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        before: JobCursor | None = None,
        since: datetime | None = None,
    ) -> list[Job]:
        # Newest first through the status-createdAt GSI (it projects whole items); without
        # a status, one query per status merged here, so listing never scans the table.
        # GSI reads are eventually consistent: a status changed a moment ago may lag.
        wanted = offset + limit
        statuses = [JobStatus(status)] if status else list(JobStatus)
        items: list[dict[str, Any]] = []
        for one in statuses:
            key = ("status", one.value)
            items.extend(self._newest(JOBS_STATUS_INDEX, key, wanted, before, since))
        return _page(items, offset, wanted)

    def campaign_jobs(
        self, campaign: str, limit: int = 50, before: JobCursor | None = None
    ) -> list[Job]:
        items = self._newest(JOBS_CAMPAIGN_INDEX, ("campaign", campaign), limit, before, None)
        return _page(items, 0, limit)

    def campaigns(self) -> dict[str, dict[str | None, int]]:
        found = {}
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.repositories_table,
            KeyConditionExpression="jobId = :p",
            ExpressionAttributeValues=_serialize({":p": CAMPAIGNS_PARTITION}),
            ConsistentRead=True,
        )
        for page in pages:
            for raw in page["Items"]:
                name = raw["repositoryName"]["S"]
                counts = self._count_by_dag(name)
                if counts:  # a campaign whose jobs all expired is listed no more
                    found[name] = counts
        return found

    def _count_by_dag(self, campaign: str) -> dict[str | None, int]:
        """The campaign's jobs per DAG: its index, read for the DAG id only."""
        counts: dict[str | None, int] = {}
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.jobs_table,
            IndexName=JOBS_CAMPAIGN_INDEX,
            KeyConditionExpression="campaign = :c",
            ProjectionExpression="dagId",
            ExpressionAttributeValues=_serialize({":c": campaign}),
        )
        for page in pages:
            for raw in page["Items"]:
                dag_id = raw["dagId"]["S"] if "dagId" in raw else None
                counts[dag_id] = counts.get(dag_id, 0) + 1
        return counts

    def _newest(
        self,
        index: str,
        key: tuple[str, str],
        wanted: int,
        before: JobCursor | None,
        since: datetime | None,
    ) -> list[dict[str, Any]]:
        """The newest `wanted` jobs of an index key after the cursor, plus any tied on the
        last createdAt (a GSI does not order ties: `_page` does)."""
        found: list[dict[str, Any]] = []
        if wanted <= 0:
            return found
        condition = "#k = :k"
        values: dict[str, Any] = {":k": key[1]}
        if before is not None:
            values[":before"] = _encode("created_at", before.created_at)
        if since is not None:
            values[":since"] = _encode("created_at", since)
        if before is not None and since is not None:
            condition += " AND createdAt BETWEEN :since AND :before"
        elif before is not None:
            condition += " AND createdAt <= :before"
        elif since is not None:
            condition += " AND createdAt >= :since"
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.jobs_table,
            IndexName=index,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#k": key[0]},
            ExpressionAttributeValues=_serialize(values),
            ScanIndexForward=False,
            PaginationConfig={"PageSize": wanted + 1},
        )
        for page in pages:
            for raw in page["Items"]:
                item = _deserialize(raw)
                if before is not None and not before.precedes(_job_from_item(item)):
                    continue  # as old as the cursor but not after it
                if len(found) >= wanted and item["createdAt"] != found[-1]["createdAt"]:
                    return found
                found.append(item)
        return found

    def update_job(
        self, job_id: str, only_from: Iterable[JobStatus] | None = None, **fields: Any
    ) -> Job:
        names = {f.name for f in dataclasses.fields(Job)}
        for name in fields:
            if name not in names or name == "job_id":
                raise AttributeError(f"Job has no updatable field {name!r}")
        if "status" in fields:
            fields["status"] = JobStatus(fields["status"])
        if isinstance(fields.get("usage"), dict):
            fields["usage"] = Usage.from_dict(fields["usage"])
        fields["updated_at"] = utcnow()
        attributes = {_attribute(name): _encode(name, value) for name, value in fields.items()}
        if "spec" in fields:
            attributes["campaign"] = campaign_of(Job("", fields["spec"]))
        update = _update_expression(attributes)
        condition = "attribute_exists(jobId)"
        if only_from is not None:
            allowed = [JobStatus(x).value for x in only_from]
            placeholders = [f":only{i}" for i in range(len(allowed))]
            condition += f" AND #only IN ({', '.join(placeholders) or ':none'})"
            update["ExpressionAttributeNames"]["#only"] = "status"
            values = _serialize(dict(zip(placeholders, allowed, strict=True)) or {":none": ""})
            update["ExpressionAttributeValues"] = {
                **update.get("ExpressionAttributeValues", {}),
                **values,
            }
        try:
            response = self.dynamodb.update_item(
                TableName=self.jobs_table,
                Key=_serialize({"jobId": job_id}),
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **update,
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                stored = self.get_job(job_id)
                if stored is None:
                    raise NotFoundError(f"job {job_id} not found") from error
                return stored  # its status is not one of only_from: left as it is
            raise
        job = _job_from_item(_deserialize(response["Attributes"]))
        if attributes.get("campaign"):
            self._register_campaign(attributes["campaign"], job)  # joined a campaign
        return job

    # results

    def get_result(self, job_id: str, repository: str) -> RepositoryResult | None:
        response = self.dynamodb.get_item(
            TableName=self.repositories_table,
            Key=_serialize(_result_key(job_id, repository)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _result_from_item(_deserialize(item)) if item else None

    def list_results(
        self, job_id: str, status: RepositoryStatus | None = None
    ) -> list[RepositoryResult]:
        query: dict[str, Any] = {
            "TableName": self.repositories_table,
            "KeyConditionExpression": "jobId = :j",
            "ExpressionAttributeValues": {":j": {"S": job_id}},
            "ConsistentRead": True,
        }
        if status:
            query["FilterExpression"] = "#s = :s"
            query["ExpressionAttributeNames"] = {"#s": "status"}
            query["ExpressionAttributeValues"][":s"] = {"S": RepositoryStatus(status).value}
        items = [
            _deserialize(raw)
            for page in self.dynamodb.get_paginator("query").paginate(**query)
            for raw in page["Items"]
        ]
        items.sort(key=lambda i: (i.get("position", _UNKNOWN_POSITION), i["createdAt"]))
        return [_result_from_item(item) for item in items]

    def results_with_pr_state(self, pr_state: str) -> list[RepositoryResult]:
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.repositories_table,
            IndexName=REPOSITORIES_PR_STATE_INDEX,
            KeyConditionExpression="prState = :s",
            ExpressionAttributeValues=_serialize({":s": pr_state}),
        )
        return newest_first(
            _result_from_item(_deserialize(raw)) for page in pages for raw in page["Items"]
        )

    def save_result(self, result: RepositoryResult) -> RepositoryResult:
        expected = result.revision
        updated_at = utcnow()
        # Write through UpdateItem (not PutItem) so the patch attributes stay untouched.
        record = dataclasses.replace(result, revision=expected + 1, updated_at=updated_at)
        attributes = {
            name: value
            for name, value in _result_item(record, drop_none=False).items()
            if name not in ("jobId", "repositoryName")
        } | {"details": None}  # a record from before the typed parts: its dict goes
        expression = _update_expression(attributes)
        expression["UpdateExpression"] = expression["UpdateExpression"].replace(
            "SET ", "SET #position = if_not_exists(#position, :position), ", 1
        )
        expression["ExpressionAttributeNames"] |= {"#position": "position", "#revision": "revision"}
        expression["ExpressionAttributeValues"][":position"] = {"N": str(_UNKNOWN_POSITION)}
        expression["ExpressionAttributeValues"][":expected"] = {"N": str(expected)}
        condition = "#revision = :expected"
        if expected == 0:
            condition = "attribute_not_exists(#revision) OR " + condition
        request = {
            "TableName": self.repositories_table,
            "Key": _serialize(_result_key(result.job_id, result.repository)),
            "ConditionExpression": condition,
            **expression,
        }
        try:
            try:
                self.dynamodb.update_item(**request)
            except ClientError as error:
                if not _too_large(error) or not self._spill_patch(result):
                    raise
                # The record no longer fits beside its inline patch: patch moved to S3, retry.
                self.dynamodb.update_item(**request)
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            stored = self.get_result(result.job_id, result.repository)
            raise StaleWriteError(
                f"{result.repository} of {result.job_id} was written by someone else "
                f"(revision {stored.revision if stored else 0}, expected {expected})"
            ) from error
        result.revision = expected + 1
        result.updated_at = updated_at
        return result

    # campaigns

    def put_fleet(self, entries: Iterable[FleetEntry]) -> None:
        for entry in entries:
            item = {
                "jobId": _fleet_partition(entry.campaign),
                "repositoryName": entry.repository,
                "fleetKey": f"{entry.campaign}#{FleetStatus(entry.status).value}",
                "member": entry.member,
                "entry": json.dumps(entry.to_dict()),
            }
            if entry.error_class:
                item["errorClass"] = entry.error_class.value
            self.dynamodb.put_item(TableName=self.repositories_table, Item=_serialize(item))

    def get_fleet(self, campaign: str, repository: str) -> FleetEntry | None:
        response = self.dynamodb.get_item(
            TableName=self.repositories_table,
            Key=_serialize(_result_key(_fleet_partition(campaign), repository)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return FleetEntry.from_dict(json.loads(item["entry"]["S"])) if item else None

    def fleet_page(
        self,
        campaign: str,
        status: FleetStatus | None = None,
        error_class: ErrorClass | None = None,
        after: str | None = None,
        limit: int = 50,
        members_only: bool = False,
    ) -> list[FleetEntry]:
        values: dict[str, Any] = {}
        if status:
            query: dict[str, Any] = {
                "IndexName": FLEET_INDEX,
                "KeyConditionExpression": "fleetKey = :k",
            }
            values[":k"] = f"{campaign}#{FleetStatus(status).value}"
        else:
            query = {"KeyConditionExpression": "jobId = :k", "ConsistentRead": True}
            values[":k"] = _fleet_partition(campaign)
        filters = []
        if error_class:
            filters.append("errorClass = :e")
            values[":e"] = ErrorClass(error_class).value
        if members_only:
            filters.append("#member = :m")
            values[":m"] = True
            query["ExpressionAttributeNames"] = {"#member": "member"}  # a reserved word
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        if after is not None:
            query["KeyConditionExpression"] += " AND repositoryName > :after"
            values[":after"] = after
        request = {
            "TableName": self.repositories_table,
            "ExpressionAttributeValues": _serialize(values),
            **query,
        }
        entries: list[FleetEntry] = []
        # A filter applies after each page is read: read on until the page is full.
        for page in self.dynamodb.get_paginator("query").paginate(
            **request, PaginationConfig={"PageSize": max(limit, 25)}
        ):
            entries.extend(FleetEntry.from_dict(json.loads(i["entry"]["S"])) for i in page["Items"])
            if len(entries) >= limit:
                break
        return entries[:limit]

    def fleet_counts(self, campaign: str) -> FleetCounts:
        counts = FleetCounts()
        for entry in self.fleet(campaign):  # one query of the campaign's partition
            counts.usd = round(counts.usd + entry.total_usd, 6)
            if not entry.member:
                counts.left += 1
                continue
            counts.members += 1
            status = FleetStatus(entry.status).value
            counts.by_status[status] = counts.by_status.get(status, 0) + 1
            if entry.error_class:
                error = entry.error_class.value
                counts.by_error[error] = counts.by_error.get(error, 0) + 1
            counts.prs_open += entry.pr_state == "open"
            counts.prs_merged += entry.pr_state == "merged"
        return counts

    def get_campaign_state(self, campaign: str) -> tuple[dict[str, Any], int]:
        response = self.dynamodb.get_item(
            TableName=self.repositories_table,
            Key=_serialize(_result_key(_state_partition(campaign), "#state")),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return {}, 0
        return json.loads(item["state"]["S"]), int(item["revision"]["N"])

    def put_campaign_state(self, campaign: str, state: dict[str, Any], revision: int) -> int:
        item = {
            **_result_key(_state_partition(campaign), "#state"),
            "revision": revision + 1,
            "state": json.dumps(state),
        }
        condition = "revision = :expected"
        if revision == 0:
            condition = "attribute_not_exists(revision) OR " + condition
        try:
            self.dynamodb.put_item(
                TableName=self.repositories_table,
                Item=_serialize(item),
                ConditionExpression=condition,
                ExpressionAttributeValues=_serialize({":expected": revision}),
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            raise StaleWriteError(
                f"campaign {campaign}'s state was written by someone else (expected {revision})"
            ) from error
        return revision + 1

    # patches and threads

    def _key(self, job_id: str, repository: str, name: str) -> str:
        return f"jobs/{quote(job_id, safe='')}/{quote(repository, safe='')}/{name}"

    def put_patch(self, job_id: str, repository: str, patch: bytes) -> None:
        key = self._key(job_id, repository, "patch.diff")
        if len(patch) <= INLINE_PATCH_LIMIT:
            try:
                old = self._set_on_result(
                    job_id, repository, {"diff": Binary(patch), "diffS3Key": None}
                )
            except ClientError as error:
                # No record yet, or the record plus patch would pass 400 KB: spill to S3.
                if _code(error) != "ConditionalCheckFailedException" and not _too_large(error):
                    raise
            else:
                if "diffS3Key" in old:
                    self.s3.delete_object(Bucket=self.bucket, Key=key)
                return
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=patch)
        self._mark(job_id, repository, {"diff": None, "diffS3Key": key})

    def get_patch(self, job_id: str, repository: str) -> bytes | None:
        inline = self._inline_patch(job_id, repository)
        if inline is not None:
            return inline
        return self._get_object(self._key(job_id, repository, "patch.diff"))

    def _inline_patch(self, job_id: str, repository: str) -> bytes | None:
        response = self.dynamodb.get_item(
            TableName=self.repositories_table,
            Key=_serialize(_result_key(job_id, repository)),
            ProjectionExpression="#d",
            ExpressionAttributeNames={"#d": "diff"},
            ConsistentRead=True,
        )
        inline = response.get("Item", {}).get("diff")
        return bytes(inline["B"]) if inline is not None else None

    def _spill_patch(self, result: RepositoryResult) -> bool:
        """Move an inline patch to S3; False when there was none."""
        patch = self._inline_patch(result.job_id, result.repository)
        if patch is None:
            return False
        key = self._key(result.job_id, result.repository, "patch.diff")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=patch)
        self._mark(result.job_id, result.repository, {"diff": None, "diffS3Key": key})
        return True

    def put_thread(self, job_id: str, repository: str, thread: dict[str, Any]) -> None:
        key = self._key(job_id, repository, "thread.json")
        body = json.dumps(thread).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        self._mark(job_id, repository, {"threadS3Key": key})

    def get_thread(self, job_id: str, repository: str) -> dict[str, Any] | None:
        body = self._get_object(self._key(job_id, repository, "thread.json"))
        return json.loads(body) if body is not None else None

    def _set_on_result(
        self, job_id: str, repository: str, attributes: dict[str, Any]
    ) -> dict[str, Any]:
        """Set attributes on an existing result record without touching its revision."""
        response = self.dynamodb.update_item(
            TableName=self.repositories_table,
            Key=_serialize(_result_key(job_id, repository)),
            ConditionExpression="attribute_exists(jobId)",
            ReturnValues="UPDATED_OLD",
            **_update_expression(attributes),
        )
        return response.get("Attributes", {})

    def _mark(self, job_id: str, repository: str, attributes: dict[str, Any]) -> None:
        """Record an S3 pointer on the result if the record exists (readers do not need it)."""
        try:
            self._set_on_result(job_id, repository, attributes)
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise

    def _get_object(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                return None
            raise

    # migration

    def migrate(self) -> int:
        """Give jobs written before the campaign index their `campaign` attribute and their
        campaign its registry item (`codybatch store migrate`); one scan, safe to rerun."""
        changed = 0
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=self.jobs_table,
            FilterExpression="attribute_not_exists(#c) AND attribute_exists(#spec.#c)",
            ExpressionAttributeNames={"#c": "campaign", "#spec": "spec"},
            ConsistentRead=True,
        )
        for page in pages:
            for raw in page["Items"]:
                job = _job_from_item(_deserialize(raw))
                campaign = campaign_of(job)
                if not campaign:
                    continue
                try:
                    self.dynamodb.update_item(
                        TableName=self.jobs_table,
                        Key=_serialize({"jobId": job.job_id}),
                        UpdateExpression="SET campaign = :c",
                        ConditionExpression="attribute_exists(jobId)",
                        ExpressionAttributeValues=_serialize({":c": campaign}),
                    )
                except ClientError as error:
                    if _code(error) != "ConditionalCheckFailedException":
                        raise
                    continue  # purged meanwhile
                self._register_campaign(campaign, job)
                changed += 1
        return changed

    def _register_campaign(self, campaign: str, job: Job) -> None:
        """The campaign's registry item, keeping the later of its expiry and the job's."""
        item = _serialize(_campaign_item(campaign, job))
        try:
            self.dynamodb.put_item(
                TableName=self.repositories_table,
                Item=item,
                ConditionExpression="attribute_not_exists(expiresAt) OR expiresAt < :e",
                ExpressionAttributeValues={":e": item["expiresAt"]},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise

    # retention

    def purge_expired(self, now: datetime | None = None) -> int:
        # DynamoDB TTL and the bucket lifecycle delete expired data on AWS by themselves
        # (TTL within about two days); this sweep makes expiry exact and cleans emulators.
        # A scan is fine here: it runs rarely and the tables hold 30 days of jobs.
        cutoff = int((now or utcnow()).timestamp())
        expired = {
            ":cutoff": {"N": str(cutoff)},
        }
        jobs = [
            _deserialize(raw)["jobId"]
            for raw in self._scan(self.jobs_table, "jobId", expired, "expiresAt < :cutoff")
        ]
        results = {
            (item["jobId"], item["repositoryName"])
            for item in (
                _deserialize(raw)
                for raw in self._scan(
                    self.repositories_table,
                    "jobId, repositoryName",
                    expired,
                    "expiresAt < :cutoff",
                )
            )
        }
        for job_id in jobs:
            results.update((job_id, r.repository) for r in self.list_results(job_id))
        for job_id, repository in results:
            self.dynamodb.delete_item(
                TableName=self.repositories_table,
                Key=_serialize(_result_key(job_id, repository)),
            )
            self._delete_prefix(self._key(job_id, repository, ""))
        for job_id in jobs:
            self.dynamodb.delete_item(TableName=self.jobs_table, Key=_serialize({"jobId": job_id}))
            self._delete_prefix(f"jobs/{quote(job_id, safe='')}/")
        return len(jobs)

    def _scan(
        self, table: str, projection: str, values: dict[str, Any], condition: str
    ) -> Iterator[dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=projection,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
        )
        for page in pages:
            yield from page["Items"]

    def _delete_prefix(self, prefix: str) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    # provisioning for emulators and tests (on AWS the CloudFormation template does this)

    def create_resources(self) -> None:
        """Create the tables and the bucket if missing, as include/aws/codybatch.yaml does."""
        existing = set(self.dynamodb.list_tables().get("TableNames", []))
        for table in table_definitions(self.jobs_table, self.repositories_table):
            if table["TableName"] in existing:
                self._add_missing_indexes(table)
                continue
            self.dynamodb.create_table(**table)
            self.dynamodb.get_waiter("table_exists").wait(TableName=table["TableName"])
            self.dynamodb.update_time_to_live(
                TableName=table["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
            )
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            region = self.s3.meta.region_name
            extra = {}
            if region and region != "us-east-1":
                extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.s3.create_bucket(Bucket=self.bucket, **extra)

    def _add_missing_indexes(self, table: dict[str, Any]) -> None:
        """Add the indexes a table from an earlier release lacks, one at a time (as DynamoDB
        and CloudFormation require), waiting for each to become active."""
        name = table["TableName"]
        described = self.dynamodb.describe_table(TableName=name)["Table"]
        have = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        for index in table["GlobalSecondaryIndexes"]:
            if index["IndexName"] in have:
                continue
            keys = {k["AttributeName"] for k in index["KeySchema"]}
            self.dynamodb.update_table(
                TableName=name,
                AttributeDefinitions=[
                    a for a in table["AttributeDefinitions"] if a["AttributeName"] in keys
                ],
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            waiter = self.dynamodb.get_waiter("table_exists")
            for _ in range(60):
                waiter.wait(TableName=name)
                indexes = self.dynamodb.describe_table(TableName=name)["Table"].get(
                    "GlobalSecondaryIndexes", []
                )
                if all(i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes):
                    break
                time.sleep(1)


def table_definitions(jobs_table: str, repositories_table: str) -> list[dict[str, Any]]:
    """CreateTable arguments of both tables (keys and indexes as in the CloudFormation template)."""

    def string(*names: str) -> list[dict[str, str]]:
        return [{"AttributeName": n, "AttributeType": "S"} for n in names]

    def key(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return schema

    return [
        {
            "TableName": jobs_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": string("jobId", "status", "createdAt", "campaign"),
            "KeySchema": key("jobId"),
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": JOBS_STATUS_INDEX,
                    "KeySchema": key("status", "createdAt"),
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": JOBS_CAMPAIGN_INDEX,
                    "KeySchema": key("campaign", "createdAt"),
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
        },
        {
            "TableName": repositories_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": string(
                "jobId", "repositoryName", "status", "updatedAt", "fleetKey", "prState", "createdAt"
            ),
            "KeySchema": key("jobId", "repositoryName"),
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": REPOSITORIES_STATUS_INDEX,
                    "KeySchema": key("status", "updatedAt"),
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": FLEET_INDEX,
                    "KeySchema": key("fleetKey", "repositoryName"),
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": REPOSITORIES_PR_STATE_INDEX,
                    "KeySchema": key("prState", "createdAt"),
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
        },
    ]


# record <-> item


def _attribute(name: str) -> str:
    """Field name -> DynamoDB attribute name (camelCase as in the seed design)."""
    if name == "repository":
        return "repositoryName"
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _field(attribute: str) -> str:
    if attribute == "repositoryName":
        return "repository"
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), attribute)


def _encode(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        if name == "expires_at":
            return int(value.timestamp())  # the TTL attribute: epoch seconds
        # Fixed width in UTC, so the GSI's string order is time order.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return encode(value)  # typed parts as maps, enums as their values


def _item(record: Any, drop_none: bool = True) -> dict[str, Any]:
    item = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None and drop_none:
            continue
        item[_attribute(f.name)] = _encode(f.name, value)
    return item


def _job_item(job: Job) -> dict[str, Any]:
    item = _item(job)
    campaign = campaign_of(job)
    if campaign:
        item["campaign"] = campaign  # the campaign index's key (absent: not in the index)
    return item


def _result_item(result: RepositoryResult, drop_none: bool = True) -> dict[str, Any]:
    return _item(result, drop_none)


def _page(items: list[dict[str, Any]], offset: int, wanted: int) -> list[Job]:
    """Items of one or more index queries, newest first (ties by job id), sliced."""
    items.sort(key=lambda i: (i["createdAt"], i["jobId"]), reverse=True)
    return [_job_from_item(item) for item in items[offset:wanted]]


def _campaign_item(campaign: str, job: Job) -> dict[str, Any]:
    return {
        "jobId": CAMPAIGNS_PARTITION,
        "repositoryName": campaign,
        "expiresAt": _encode("expires_at", job.expires_at),
    }


def _fleet_partition(campaign: str) -> str:
    return f"fleet#{campaign}"


def _state_partition(campaign: str) -> str:
    return f"campaign#{campaign}"


def _result_key(job_id: str, repository: str) -> dict[str, str]:
    return {"jobId": job_id, "repositoryName": repository}


def _decode(item: dict[str, Any]) -> dict[str, Any]:
    data = {_field(name): value for name, value in item.items()}
    if "expires_at" in data:
        data["expires_at"] = datetime.fromtimestamp(int(data["expires_at"]), UTC)
    return data


def _job_from_item(item: dict[str, Any]) -> Job:
    return Job.from_dict(_decode(item))


def _result_from_item(item: dict[str, Any]) -> RepositoryResult:
    return RepositoryResult.from_dict(_decode(item))


def _update_expression(attributes: dict[str, Any]) -> dict[str, Any]:
    """SET the attributes with values, REMOVE those that are None."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    removes: list[str] = []
    for i, (name, value) in enumerate(attributes.items()):
        names[f"#a{i}"] = name
        if value is None:
            removes.append(f"#a{i}")
        else:
            values[f":v{i}"] = value
            sets.append(f"#a{i} = :v{i}")
    expression = ""
    if sets:
        expression += "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    out: dict[str, Any] = {
        "UpdateExpression": expression.strip(),
        "ExpressionAttributeNames": names,
    }
    if values:
        out["ExpressionAttributeValues"] = _serialize(values)
    return out


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items()}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def _to_dynamo(value: Any) -> Any:
    """DynamoDB has no float: numbers travel as Decimal (through str, so 0.1 stays 0.1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value.value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _too_large(error: ClientError) -> bool:
    """DynamoDB refused an item above 400 KB."""
    message = error.response.get("Error", {}).get("Message", "")
    return _code(error) == "ValidationException" and "size" in message.lower()
