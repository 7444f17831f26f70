"""moto's server on 127.0.0.1: the real boto3 talks HTTP to it, with dummy credentials."""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.batch_simple.models import BatchSimpleBackend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

REGION = "us-east-1"


class SerialMotoServer(ThreadedMotoServer):
    """moto's threaded server answering one DynamoDB request at a time.

    moto does not lock its backends, so two concurrent conditional writes can both pass
    their condition; DynamoDB makes each write atomic. Serialising restores that. Other
    services stay concurrent (a fake Batch container talks to DynamoDB mid-request).
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
                return list(app(environ, start_response))
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, serial, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's server (every AWS service on one port); yield its endpoint URL."""
    server = SerialMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_environment(endpoint: str) -> dict[str, str]:
    """Environment that points boto3 (and so the AWS store) at moto, never at AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }


def unique_names() -> dict[str, str]:
    """Fresh table and bucket names (CODYBATCH_* variables), so tests never share data."""
    prefix = f"cb-{uuid.uuid4().hex[:10]}"
    return {
        "CODYBATCH_STORE": "aws",
        "CODYBATCH_JOBS_TABLE": f"{prefix}-jobs",
        "CODYBATCH_REPOSITORIES_TABLE": f"{prefix}-repositories",
        "CODYBATCH_BUCKET": f"{prefix}-results",
    }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process environment points at moto; returns the variables set."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = aws_environment(moto_endpoint)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def deploy_stack(stack_name: str, template: Path, **parameters: str) -> dict[str, str]:
    """Create the CloudFormation stack in moto (with a network and two secrets); its outputs."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=stack_name, Description="workers", VpcId=vpc)
    secrets = boto3.client("secretsmanager")
    anthropic = secrets.create_secret(Name=f"{stack_name}/anthropic", SecretString=FAKE_SECRETS[0])
    github = secrets.create_secret(Name=f"{stack_name}/github", SecretString=FAKE_SECRETS[1])
    parameters = {
        "NamePrefix": stack_name,
        "WorkerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/codybatch-worker:1",
        "SubnetIds": subnet,
        "SecurityGroupIds": group["GroupId"],
        "AnthropicApiKeySecretArn": anthropic["ARN"],
        "GitHubTokenSecretArn": github["ARN"],
    } | parameters
    cloudformation = boto3.client("cloudformation")
    cloudformation.validate_template(TemplateBody=template.read_text())
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=template.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(StackName=stack_name)
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


FAKE_SECRETS = ("sk-ant-fake-batch-secret", "ghp_fakeBatchSecret")


@dataclass
class ContainerRun:
    """One Batch job the fake ran: what it was given and how it ended."""

    job_id: str
    command: list[str]
    environment: dict[str, str]
    exit_code: int
    output: str


class LocalBatch:
    """moto's Batch without Docker, whose containers are local processes.

    moto marks submitted jobs SUCCEEDED without running anything. Inside this context,
    SubmitJob instead runs the container's command (override or job definition) as a
    process, with the job definition's environment and its Secrets resolved from Secrets
    Manager, as ECS would; the exit code decides SUCCEEDED or FAILED. With `hold`, jobs
    stay RUNNING and nothing runs (to test stopping them).
    """

    def __init__(self, endpoint: str, base_env: dict[str, str]):
        self.endpoint = endpoint
        self.base_env = base_env
        self.runs: list[ContainerRun] = []
        self.hold = False

    def __enter__(self) -> LocalBatch:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/config",
            data=json.dumps({"batch": {"use_docker": False}}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request).close()
        self._original = BatchSimpleBackend._mark_job_as_finished
        fake = self

        def run_then_finish(backend: Any, include_start_attempt: bool, job: Any) -> None:
            fake._run(backend, job)

        BatchSimpleBackend._mark_job_as_finished = run_then_finish
        return self

    def __exit__(self, *exc: object) -> None:
        BatchSimpleBackend._mark_job_as_finished = self._original

    def _run(self, backend: Any, job: Any) -> None:
        backend.backend._jobs[job.job_id] = job
        job.job_started_at = datetime.datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        if self.hold:
            job.status = "RUNNING"
            return
        container = job.job_definition.container_properties or {}
        command = job.container_overrides.get("command") or container.get("command")
        env = {e["name"]: e["value"] for e in container.get("environment", [])}
        secrets = boto3.client("secretsmanager", endpoint_url=self.endpoint, region_name=REGION)
        for secret in container.get("secrets", []):
            value = secrets.get_secret_value(SecretId=secret["valueFrom"])["SecretString"]
            env[secret["name"]] = value
        env |= {e["name"]: e["value"] for e in job.container_overrides.get("environment", [])}
        process = subprocess.run(
            command, env=self.base_env | env, capture_output=True, text=True, timeout=300
        )
        self.runs.append(
            ContainerRun(
                job.job_id, command, env, process.returncode, process.stdout + process.stderr
            )
        )
        job._mark_stopped(success=process.returncode == 0)
