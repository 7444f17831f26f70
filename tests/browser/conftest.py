"""A real `airflow standalone` with the plugin, and headless Debian Chromium driven by Playwright.

Playwright cannot download its own browser here: the set-up installs Debian's `chromium`
when it is missing and skips (saying why) only when that is impossible.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STARTUP_TIMEOUT = 240


def _install_chromium() -> str | None:
    """Install Debian's chromium if absent; return why it is unavailable, or None."""
    if Path(CHROMIUM).exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "no /usr/bin/chromium, and `apt-get install chromium` needs apt-get and root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, timeout=900, check=False)
    if done.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, timeout=900, check=False)
    if Path(CHROMIUM).exists():
        return None
    return f"`apt-get install -y chromium` failed: {done.stderr.decode(errors='replace')[-500:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Airflow:
    url: str
    home: Path
    codybatch_home: Path
    env: dict[str, str]
    log: Path
    claude: Any = None  # the fake Anthropic API its workers talk to (tests script it)

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def token(self) -> str:
        status, data = self.post("/auth/token", {"username": "admin", "password": "admin"})
        assert status == 201, data
        return data["access_token"]


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@pytest.fixture(scope="module")
def airflow_server(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[Airflow]:
    """`airflow standalone` on a free port, with this repository's dags/ and plugins/; its
    workers talk to a fake Anthropic API on 127.0.0.1 that the tests script."""
    base = tmp_path_factory.mktemp("standalone")
    claude = FakeAnthropic().start()
    home, codybatch_home = base / "airflow", base / "codybatch"
    home.mkdir()
    (home / "passwords.json").write_text('{"admin": "admin"}')
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    bin_dir = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "CODYBATCH_", "PYTEST_"))
        and k not in ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET="codybatch-browser-tests-" + "y" * 40,
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        CODYBATCH_HOME=str(codybatch_home),
        CODYBATCH_LOCAL_ROOT=tempfile.gettempdir(),  # the tests' repositories
        ANTHROPIC_BASE_URL=claude.url,
        ANTHROPIC_API_KEY=claude.api_key,
    )
    log = base / "standalone.log"
    for command in (
        ["airflow", "db", "migrate"],
        ["airflow", "pools", "set", "codybatch", "5", "Cody Batch workers"],
    ):
        subprocess.run(command, env=env, cwd=base, capture_output=True, check=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["airflow", "standalone"],
            env=env,
            cwd=base,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    server = Airflow(url, home, codybatch_home, env, log, claude)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airflow standalone exited ({proc.returncode}):\n{_tail(log)}")
            try:
                if server.get("/api/v2/version")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow standalone did not answer in time:\n{_tail(log)}")
            time.sleep(1)
        yield server
    finally:
        _stop(proc)
        claude.stop()
        shutil.copy(log, _artifacts() / "standalone.log")


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (standalone's own clean shutdown), then the process group if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # The components it spawned share its process group: make sure none outlives it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, airflow_server: Airflow) -> Iterator:
    """One logged-in tab for the module (the login itself is the first test's subject)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest):
    """Save a full-page screenshot under test-artifacts/browser/."""

    def take(page, name: str) -> Path:
        path = _artifacts() / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
