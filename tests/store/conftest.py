"""Store fixtures: a fresh local store and a fresh AWS store (on moto's server) per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from codybatch.settings import Settings
from codybatch.store import Store, open_store
from codybatch.store.aws import AwsStore
from tests.fakes import aws as fake_aws

moto_endpoint = fake_aws.moto_endpoint
aws_env = fake_aws.aws_env


@pytest.fixture
def aws_store_env(aws_env: dict[str, str]) -> dict[str, str]:
    """Environment of a fresh AWS store: moto endpoint, credentials, new tables and bucket."""
    env = aws_env | fake_aws.unique_names()
    store = AwsStore.from_settings(Settings.from_env(env))
    store.create_resources()
    return env


@pytest.fixture
def aws_store(aws_store_env: dict[str, str]) -> AwsStore:
    store = open_store(Settings.from_env(aws_store_env))
    assert isinstance(store, AwsStore)
    return store


@pytest.fixture(params=["local", "aws"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """CODYBATCH_* (and AWS_*) variables selecting a fresh store of each kind."""
    if request.param == "aws":
        return request.getfixturevalue("aws_store_env")
    return {"CODYBATCH_STORE": "local", "CODYBATCH_HOME": str(tmp_path / "home")}


@pytest.fixture
def make_store(store_env: dict[str, str]) -> Callable[[], Store]:
    """Opens another client of the same store (as another worker would)."""
    return lambda: open_store(Settings.from_env(store_env))


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()
