"""Shared fixtures: an isolated Airflow home and Cody Batch home, example repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Airflow reads its configuration when first imported: point it at a private home before
# any test module imports it, so tests never touch the developer's .airflow/.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="codybatch-test-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(_AIRFLOW_HOME / "passwords.json"),
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
)
(_AIRFLOW_HOME / "passwords.json").write_text('{"admin": "admin", "viewer": "viewer"}')
for _name in ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "CODYBATCH_STORE"):
    os.environ.pop(_name, None)
_CODYBATCH_HOME = Path(tempfile.mkdtemp(prefix="codybatch-home-"))
os.environ.setdefault("CODYBATCH_HOME", str(_CODYBATCH_HOME))
# Tests make their local repositories in tmp dirs: allow those (and only those) by default.
os.environ.setdefault("CODYBATCH_LOCAL_ROOT", tempfile.gettempdir())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the private Airflow and Cody Batch homes made at import."""
    for folder in (_AIRFLOW_HOME, _CODYBATCH_HOME):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """A migrated Airflow metadata DB (SQLite) with the `codybatch` pool."""
    marker = _AIRFLOW_HOME / ".migrated"
    if not marker.exists():
        for command in (
            ["airflow", "db", "migrate"],
            ["airflow", "pools", "set", "codybatch", "5", "Cody Batch workers"],
        ):
            subprocess.run(command, check=True, capture_output=True, env=os.environ)
        marker.touch()
    return _AIRFLOW_HOME


@pytest.fixture
def codybatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CODYBATCH_HOME (local store) for one test."""
    home = tmp_path / "codybatch-home"
    monkeypatch.setenv("CODYBATCH_HOME", str(home))
    monkeypatch.delenv("CODYBATCH_ALLOWED_REPOSITORIES", raising=False)
    monkeypatch.delenv("ALLOWED_REPOSITORIES", raising=False)
    return home


@pytest.fixture
def example_repos(tmp_path: Path) -> list[Path]:
    """The demo's three repositories: two call oldFunction, the third does not."""
    from codybatch.demo import make_examples

    return make_examples(tmp_path / "examples")


@pytest.fixture
def demo_conf(example_repos: list[Path]) -> dict:
    """The demo job's conf (shell step only) over the example repositories."""
    import yaml

    conf = yaml.safe_load((ROOT / "include/examples/replace-old-function.yaml").read_text())
    conf.pop("prompt")
    conf["repositories"] = [str(p) for p in example_repos]
    return conf


@pytest.fixture(scope="session")
def bwrap() -> object:
    """The bubblewrap sandbox; fails the test, saying what to install, when it cannot start."""
    from codybatch.sandbox import detect

    sandbox = detect()
    if sandbox.kind != "bwrap":
        pytest.fail(f"this test needs the bubblewrap sandbox: {sandbox.reason}", pytrace=False)
    return sandbox
