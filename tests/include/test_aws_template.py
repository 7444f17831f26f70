"""include/aws/codybatch.yaml: lints clean, says what it must, deploys into moto and works."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import lint_all

from codybatch.records import Job, RepositoryStatus
from codybatch.settings import Settings
from codybatch.store.aws import INLINE_PATCH_LIMIT, AwsStore, table_definitions
from tests.fakes.aws import FAKE_SECRETS, deploy_stack

TEMPLATE = Path(__file__).resolve().parents[2] / "include" / "aws" / "codybatch.yaml"


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, !GetAtt) as their long forms."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def test_cfn_lint_finds_nothing() -> None:
    matches = lint_all(TEMPLATE.read_text())
    # Errors and warnings, as the cfn-lint command reports by default (not informational).
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []


def test_job_definition_runs_the_worker_on_fargate_with_secrets_from_secrets_manager(
    template: dict[str, Any],
) -> None:
    (definition,) = resources_of(template, "AWS::Batch::JobDefinition").values()
    container = definition["ContainerProperties"]
    assert definition["PlatformCapabilities"] == ["FARGATE"]
    assert container["Command"][:2] == ["codybatch", "worker"]
    assert {r["Type"]: r["Value"] for r in container["ResourceRequirements"]} == {
        "VCPU": "2",
        "MEMORY": "4096",
    }
    assert {s["Name"]: s["ValueFrom"] for s in container["Secrets"]} == {
        "ANTHROPIC_API_KEY": {"Ref": "AnthropicApiKeySecretArn"},
        "GITHUB_TOKEN": {"Ref": "GitHubTokenSecretArn"},
    }
    plain = {e["Name"] for e in container["Environment"]}
    assert not plain & {"ANTHROPIC_API_KEY", "GITHUB_TOKEN", "CLAUDE_API_KEY"}
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    (compute,) = resources_of(template, "AWS::Batch::ComputeEnvironment").values()
    assert compute["ComputeResources"]["Type"] == "FARGATE"


def test_tables_have_the_store_keys_indexes_ttl_and_recovery(template: dict[str, Any]) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    expected = {
        d["TableName"]: d for d in table_definitions("codybatch-jobs", "codybatch-repositories")
    }
    for properties in tables.values():
        name = properties["TableName"]["Fn::Sub"].replace("${NamePrefix}", "codybatch")
        wanted = expected.pop(name)
        assert properties["KeySchema"] == wanted["KeySchema"]
        assert properties["AttributeDefinitions"] == wanted["AttributeDefinitions"]
        assert [(i["IndexName"], i["KeySchema"]) for i in properties["GlobalSecondaryIndexes"]] == [
            (i["IndexName"], i["KeySchema"]) for i in wanted["GlobalSecondaryIndexes"]
        ]
        assert properties["TimeToLiveSpecification"] == {
            "AttributeName": "expiresAt",
            "Enabled": True,
        }
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
    assert expected == {}


def test_bucket_is_encrypted_private_and_expires_objects(template: dict[str, Any]) -> None:
    (bucket,) = resources_of(template, "AWS::S3::Bucket").values()
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 30)


def test_worker_role_reaches_only_its_tables_and_bucket(template: dict[str, Any]) -> None:
    role = template["Resources"]["WorkerJobRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    actions, targets = set(), set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        action, resource = statement["Action"], statement["Resource"]
        actions.update([action] if isinstance(action, str) else action)
        for one in [resource] if isinstance(resource, dict) else resource:
            targets.add(one.get("Fn::GetAtt", [one.get("Fn::Sub")])[0])
    assert targets == {
        "JobsTable",
        "RepositoriesTable",
        "ResultsBucket",
        "${ResultsBucket.Arn}/jobs/*",
    }
    assert {a.split(":")[0] for a in actions} == {"dynamodb", "s3"}
    assert not [a for a in actions if "*" in a or ("Delete" in a and a.startswith("dynamodb"))]
    assert "dynamodb:Scan" not in actions


def test_cfn_lint_would_notice_a_mistake() -> None:
    broken = TEMPLATE.read_text().replace("Type: FARGATE\n", "Type: FARGATE_X\n")
    assert [m.rule.id for m in lint_all(broken) if m.rule.id[0] == "E"]


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("CODYBATCH_BATCH_JOB_QUEUE", "batch_job_queue"),
        ("CODYBATCH_BATCH_JOB_DEFINITION", "batch_job_definition"),
        ("CODYBATCH_JOBS_TABLE", "jobs_table"),
        ("CODYBATCH_REPOSITORIES_TABLE", "repositories_table"),
        ("CODYBATCH_BUCKET", "bucket"),
        ("AWS_REGION", "aws_region"),
    ],
)
def test_outputs_name_the_settings_airflow_needs(
    template: dict[str, Any], variable: str, field: str
) -> None:
    described = [o["Description"].split()[0] for o in template["Outputs"].values()]
    assert variable in described
    assert getattr(Settings.from_env({variable: "from-output"}), field) == "from-output"
    assert f"{variable}=" in template["Outputs"]["AirflowEnvironment"]["Value"]["Fn::Sub"]


def test_the_stack_deploys_into_moto_and_the_store_runs_on_it(aws_env: dict[str, str]) -> None:
    outputs = deploy_stack("cbstack", TEMPLATE, AllowedRepositories="github.com/acme/*")

    assert outputs["JobQueueName"] == "cbstack-queue"
    assert outputs["JobDefinitionName"] == "cbstack-worker"
    environment = dict(line.split("=", 1) for line in outputs["AirflowEnvironment"].split())
    settings = Settings.from_env(aws_env | environment)
    assert (settings.store, settings.runner) == ("aws", "batch")
    assert settings.jobs_table == outputs["JobsTableName"] == "cbstack-jobs"
    assert settings.bucket == outputs["BucketName"]

    batch = boto3.client("batch")
    (queue,) = batch.describe_job_queues(jobQueues=[settings.batch_job_queue])["jobQueues"]
    assert queue["state"] == "ENABLED"
    definitions = batch.describe_job_definitions(
        jobDefinitionName=settings.batch_job_definition, status="ACTIVE"
    )["jobDefinitions"]
    container = definitions[-1]["containerProperties"]
    assert {s["name"] for s in container["secrets"]} == {"ANTHROPIC_API_KEY", "GITHUB_TOKEN"}
    assert not [s for s in FAKE_SECRETS if s in str(definitions)]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CODYBATCH_JOBS_TABLE"] == settings.jobs_table
    assert env["CODYBATCH_BUCKET"] == settings.bucket

    dynamodb = boto3.client("dynamodb")
    for table in (settings.jobs_table, settings.repositories_table):
        # moto's CloudFormation skips TimeToLiveSpecification (the template test asserts it).
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
        )

    store = AwsStore.from_settings(settings)
    job = store.create_job(
        Job(job_id="job-stack", spec={"name": "n", "repositories": ["github.com/acme/a"]})
    )
    result = store.get_result(job.job_id, "github.com/acme/a")
    result.status = RepositoryStatus.COMPLETED
    store.save_result(result)
    large = random.Random(1).randbytes(INLINE_PATCH_LIMIT + 1)
    store.put_patch(job.job_id, "github.com/acme/a", large)
    store.put_thread(job.job_id, "github.com/acme/a", {"messages": []})

    assert store.list_jobs() == [job]
    assert store.list_results(job.job_id)[0].revision == 1
    assert store.get_patch(job.job_id, "github.com/acme/a") == large
    assert store.get_thread(job.job_id, "github.com/acme/a") == {"messages": []}
    listing = boto3.client("s3").list_objects_v2(Bucket=settings.bucket)
    assert len(listing["Contents"]) == 2
