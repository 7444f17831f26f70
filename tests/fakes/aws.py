"""moto's server on 127.0.0.1: the real boto3 talks HTTP to it, with dummy credentials."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

REGION = "us-east-1"


class SerialMotoServer(ThreadedMotoServer):
    """moto's threaded server answering one request at a time.

    moto does not lock its backends, so two concurrent conditional writes can both pass
    their condition; DynamoDB makes each write atomic. Serialising restores that.
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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
