"""The real Airflow api-server app (plugin mounted), tokens, and a fresh local store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codybatch.store.local import LocalStore


@pytest.fixture(scope="session")
def airflow_app(airflow_home: Path):
    """Airflow's api-server app with the plugin mounted, the job DAG serialized in the DB."""
    marker = airflow_home / ".reserialized"
    if not marker.exists():
        subprocess.run(
            ["airflow", "dags", "reserialize"], check=True, capture_output=True, env=os.environ
        )
        marker.touch()
    # One signing key for the session, as a deployment configures it (tokens stay valid).
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "codybatch-tests-" + "x" * 48)
    from airflow.api_fastapi.app import create_app

    return create_app()


@pytest.fixture(scope="session")
def session_client(airflow_app):
    from fastapi.testclient import TestClient

    # No lifespan: it starts the task execution API, which these tests do not use.
    client = TestClient(airflow_app, follow_redirects=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tokens(session_client) -> dict[str, str]:
    """JWTs of the admin and of a viewer (may read, may not trigger)."""
    out = {}
    for user in ("admin", "viewer"):
        response = session_client.post("/auth/token", json={"username": user, "password": user})
        assert response.status_code == 201, response.text
        out[user] = response.json()["access_token"]
    return out


@pytest.fixture
def client(session_client, codybatch_home: Path):
    """The app's client, anonymous, with no cookies left from another test."""
    session_client.cookies.clear()
    session_client.headers.pop("Authorization", None)
    return session_client


@pytest.fixture
def admin(client, tokens: dict[str, str]):
    """The client authenticated as admin with a Bearer token."""
    client.headers["Authorization"] = f"Bearer {tokens['admin']}"
    yield client
    client.headers.pop("Authorization", None)


@pytest.fixture
def store(codybatch_home: Path) -> LocalStore:
    return LocalStore(codybatch_home)
