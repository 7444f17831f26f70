"""`make up`'s supervisor: a real PostgreSQL cluster, and a stack that stops when a part dies."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from codybatch.airflow import stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that still run (a zombie only waits for init to reap it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_sizing_follows_the_machine() -> None:
    assert stack.sizing(cpus=2, memory_mb=24_000) == {"parallelism": 8, "api_workers": 2}
    assert stack.sizing(cpus=16, memory_mb=64_000)["parallelism"] == 32
    assert stack.sizing(cpus=8, memory_mb=4_000)["parallelism"] == 10  # memory bounds it
    assert stack.sizing(cpus=1, memory_mb=1_000)["parallelism"] == 4


def test_a_dead_component_stops_the_others_with_a_message(tmp_path: Path) -> None:
    env = dict(os.environ)
    processes = {
        "scheduler": stack.start("scheduler", ["sh", "-c", "sleep 300 & wait"], env, tmp_path),
        "triggerer": stack.start(
            "triggerer",
            ["sh", "-c", "echo 'database is locked' >&2; sleep 0.5; exit 3"],
            env,
            tmp_path,
        ),
    }
    started = time.monotonic()
    with pytest.raises(stack.StackError) as raised:
        stack.supervise(processes, tmp_path, None, stopping=[], every=0.1)
    stack.stop_all(processes)

    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "the triggerer exited (code 3): stopping the stack" in message
    assert "database is locked" in message  # the end of its log
    assert processes["scheduler"].wait(timeout=5) == -signal.SIGTERM
    assert _live_members(processes["scheduler"].pid) == []  # its child went with its group


def test_a_stop_request_ends_supervision(tmp_path: Path) -> None:
    proc = stack.start("api-server", ["sleep", "300"], dict(os.environ), tmp_path)
    stack.supervise({"api-server": proc}, tmp_path, None, stopping=[signal.SIGINT])
    stack.stop_all({"api-server": proc})
    assert proc.poll() is not None


def test_the_stack_waits_for_the_api_server_before_the_rest(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    # An api-server that starts listening (and answers 200) only after a second and a half.
    serve = (
        "import http.server, time; time.sleep(1.5)\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path.endswith('/health') else 404)\n"
        "        self.end_headers()\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    )
    proc = stack.start("api-server", [sys.executable, "-c", serve], dict(os.environ), tmp_path)
    started = time.monotonic()
    try:
        stack.wait_for_api(proc, url, tmp_path, timeout=30)
        assert time.monotonic() - started >= 1.5  # it waited for the server, not a fixed time
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        stack.stop_all({"api-server": proc})


def test_an_api_server_that_dies_while_starting_is_named(tmp_path: Path) -> None:
    crash = ["sh", "-c", "echo 'address already in use' >&2; exit 1"]
    proc = stack.start("api-server", crash, dict(os.environ), tmp_path)
    with pytest.raises(stack.StackError) as raised:
        stack.wait_for_api(proc, f"http://127.0.0.1:{_free_port()}/", tmp_path, timeout=30)
    assert "the api-server exited (code 1) while starting" in str(raised.value)
    assert "address already in use" in str(raised.value)


@pytest.fixture
def pg_dir():
    """A directory the postgres user can reach (pytest's own tmp is private to root)."""
    parent = Path(tempfile.mkdtemp(prefix="cb-pg-"))
    parent.chmod(0o755)
    yield parent / "postgres"
    shutil.rmtree(parent, ignore_errors=True)


def test_a_private_postgres_cluster_for_airflow(pg_dir: Path) -> None:
    import psycopg2

    port = _free_port()
    root = pg_dir
    postgres = stack.Postgres(root, port)
    postgres.init()
    postgres.start()
    try:
        url = postgres.ensure_database()
        assert postgres.ensure_database() == url  # a second start finds role and database
        assert url.startswith("postgresql+psycopg2://airflow:") and f"@127.0.0.1:{port}/" in url
        password = url.split(":")[2].split("@")[0]
        db = psycopg2.connect(
            host="127.0.0.1", port=port, user="airflow", password=password, dbname="airflow"
        )
        with db.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")  # the airflow role owns its database
        db.close()
        with pytest.raises(psycopg2.OperationalError):  # passwords are required
            psycopg2.connect(host="127.0.0.1", port=port, user="airflow", password="x")
        assert (root / "passwords.json").stat().st_mode & 0o077 == 0
    finally:
        postgres.stop()
    assert not postgres.running()


def test_running_as_root_uses_the_postgres_user() -> None:
    postgres = stack.Postgres(Path("/nonexistent"), 1)
    command = postgres._as_owner("initdb", "-D", "x")
    if os.geteuid() == 0:
        assert command[:4] == ["runuser", "-u", "postgres", "--"]
    else:
        assert command == ["initdb", "-D", "x"]
