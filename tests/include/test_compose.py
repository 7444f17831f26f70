"""docker-compose.yaml: the official Airflow 3 shape, plus moto for the AWS store."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import yaml

from codybatch.records import Job
from codybatch.settings import Settings
from codybatch.store import open_store

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and `<<` merges resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def test_it_has_the_official_airflow_3_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "aws", "airflow-init", *AIRFLOW_SERVICES}
    assert services["postgres"]["image"] == "postgres:16"
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "aws": {"condition": "service_healthy"},
            "airflow-init": {"condition": "service_completed_successfully"},
        }
        assert services[name]["healthcheck"]["test"]
    assert services["airflow-apiserver"]["ports"] == ["8080:8080"]


def test_airflow_services_share_one_configuration(services: dict[str, Any]) -> None:
    airflow = [services[name] for name in [*AIRFLOW_SERVICES, "airflow-init"]]
    secrets = {s["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for s in airflow}
    assert len(secrets) == 1 and secrets.pop()
    for service in airflow:
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
            "http://airflow-apiserver:8080/"
        )
        assert service["image"] == "codybatch-airflow:latest"


def test_this_repository_is_mounted_and_installed(services: dict[str, Any]) -> None:
    scheduler = services["airflow-scheduler"]
    mounts = dict(volume.split(":", 1) for volume in scheduler["volumes"])
    assert mounts["./dags"] == "/opt/airflow/dags"
    assert mounts["./plugins"] == "/opt/airflow/plugins"
    assert mounts["./codybatch"] == "/opt/codybatch/codybatch"
    for host in (m for m in mounts if m.startswith("./")):
        assert (ROOT / host).is_dir(), host
    dockerfile = scheduler["build"]["dockerfile_inline"]
    assert re.search(r"^FROM apache/airflow:3\.\d+\.\d+", dockerfile, re.M)
    assert "pip install" in dockerfile and "-e /opt/codybatch" in dockerfile
    for copied in re.findall(r"^COPY \S+ (\S+) ", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied


def test_secrets_come_from_the_host_never_from_the_file(services: dict[str, Any]) -> None:
    for service in services.values():
        env = service.get("environment", {})
        for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN"):
            if name in env:
                assert env[name] == f"${{{name}:-}}"


def test_init_migrates_creates_the_admin_the_pool_and_the_store(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    script = init["command"][-1]
    assert "airflow db migrate" in script
    assert "passwords.json" in script and "admin" in script
    assert "airflow pools set codybatch" in script
    assert init["environment"]["AIRFLOW_ADMIN_PASSWORD"] == "${AIRFLOW_ADMIN_PASSWORD:-admin}"


def test_the_store_settings_and_init_work_against_moto(
    services: dict[str, Any], aws_env: dict[str, str]
) -> None:
    init = services["airflow-init"]
    env = {k: str(v) for k, v in init["environment"].items()}
    endpoint = urlparse(env["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "aws"
    assert f"-p {endpoint.port}" in " ".join(services["aws"]["command"])
    assert services["aws"]["ports"] == [f"127.0.0.1:{endpoint.port}:{endpoint.port}"]
    assert "moto[server]==" in " ".join(services["aws"]["command"])

    # Replay the init's store line with the compose environment, moto's address swapped in.
    env = env | {"AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL"]}
    (line,) = [x for x in init["command"][-1].splitlines() if x.startswith("python -c")]
    code = shlex.split(line)[2]
    subprocess.run([sys.executable, "-c", code], env={**aws_env, **env}, check=True)
    settings = Settings.from_env(env)
    assert (settings.store, settings.runner) == ("aws", "local")
    store = open_store(settings)
    job = store.create_job(Job(job_id="job-compose", spec={"repositories": ["/r"]}))
    assert store.get_job("job-compose") == job
    assert boto3.client("s3").head_bucket(Bucket=settings.bucket)


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine on this machine")
    subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], check=True, cwd=ROOT
    )
