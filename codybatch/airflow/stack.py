"""`make up`: Airflow on a local PostgreSQL cluster with the LocalExecutor, supervised.

PostgreSQL (Debian's package) gets a private cluster under `$AIRFLOW_HOME/postgres/`, created
on first use and run as the unprivileged `postgres` user when this runs as root. Then the
api-server, scheduler, dag-processor and triggerer run as separate processes, each logging to
`$AIRFLOW_HOME/logs/stack/`. If any of them (or PostgreSQL) exits, the others are stopped and
this exits non-zero naming it, with the end of its log; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codybatch import orphans

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Each api-server worker serves the REST API and every task's execution API calls: a burst of
# triggers plus running tasks needs more than SQLAlchemy's default 5 + 10 connections.
API_POOL = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "10",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "30",
}
MAX_CONNECTIONS = 300
POSTGRES_USER = "postgres"  # the system user Debian's package creates


class StackError(Exception):
    """The stack cannot start or stopped; the message says what to do."""


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps it off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise StackError("PostgreSQL is not installed: `apt-get install postgresql` (make up does it)")


def sizing(cpus: int | None = None, memory_mb: int | None = None) -> dict[str, int]:
    """Executor parallelism and api-server workers for this machine: a task process takes
    ~200 MB and mostly waits on git and steps, so a few per core, bounded by memory."""
    cpus = cpus or os.cpu_count() or 1
    if memory_mb is None:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    parallelism = max(4, min(4 * cpus, 32, memory_mb // 400))
    return {"parallelism": parallelism, "api_workers": max(1, min(cpus, 4))}


@dataclass
class Postgres:
    """A private cluster: data, socket and log under `root`, listening on 127.0.0.1:port."""

    root: Path
    port: int
    bin: Path = field(default_factory=pg_bin)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, *command: str | Path) -> list[str]:
        args = [str(c) for c in command]
        # initdb and postgres refuse to run as root.
        return ["runuser", "-u", POSTGRES_USER, "--", *args] if os.geteuid() == 0 else args

    def _run(self, *command: str | Path) -> None:
        proc = subprocess.run(self._as_owner(*command), capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"{Path(str(command[0])).name} failed:\n{proc.stdout}{proc.stderr}")

    def passwords(self) -> dict[str, str]:
        path = self.root / "passwords.json"
        if not path.exists():
            values = {"postgres": secrets.token_urlsafe(24), "airflow": secrets.token_urlsafe(24)}
            path.write_text(json.dumps(values))
            path.chmod(0o600)
        return json.loads(path.read_text())

    def init(self) -> None:
        """Create the cluster (scram passwords, TCP on localhost only) unless it exists."""
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if (
            os.geteuid() == 0
            and subprocess.run(self._as_owner("test", "-x", self.root.parent)).returncode
        ):
            raise StackError(
                f"the {POSTGRES_USER} user cannot reach {self.root} (a parent directory is "
                "private, e.g. /root): set CODYBATCH_PG_DIR to a directory it can reach"
            )
        password = self.passwords()["postgres"]
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            shutil.chown(self.root, POSTGRES_USER)
            shutil.chown(pwfile, POSTGRES_USER)
        pwfile.chmod(0o600)
        try:
            self._run(
                self.bin / "initdb",
                "-D",
                self.data,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def running(self) -> bool:
        return (
            subprocess.run(
                self._as_owner(self.bin / "pg_ctl", "-D", self.data, "status"),
                capture_output=True,
            ).returncode
            == 0
        )

    def start(self) -> None:
        if self.running():
            return  # left running by a stack that was killed: use it
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            f"-c max_connections={MAX_CONNECTIONS}"
        )
        self._run(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.root / "postgres.log",
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(StackError):
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def ensure_database(self) -> str:
        """The `airflow` role and database; return Airflow's SQLAlchemy URL."""
        import psycopg2

        pw = self.passwords()
        admin = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=pw["postgres"],
            dbname="postgres",
        )
        admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'airflow'")
            if not cur.fetchone():
                cur.execute("CREATE ROLE airflow LOGIN PASSWORD %s", (pw["airflow"],))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if not cur.fetchone():
                cur.execute("CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8'")
        admin.close()
        return f"postgresql+psycopg2://airflow:{pw['airflow']}@127.0.0.1:{self.port}/airflow"


def _tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """TERM every component's process group, then KILL what is left after 20 s."""
    for proc in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _airflow(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(["airflow", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(
            f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """One component in its own process group, logging to logs/NAME.log; it gets SIGTERM if
    the supervisor dies."""
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # stopped with all it started
            preexec_fn=orphans.stop_with_parent,
        )


def wait_for_api(proc: subprocess.Popen[bytes], url: str, logs: Path, timeout: float = 180) -> None:
    """Return once the api-server answers its health check: tasks call its execution API from
    their first second, so a scheduler started sooner fails the first runs it queues."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = logs / "api-server.log"
            raise StackError(
                f"the api-server exited (code {proc.returncode}) while starting. "
                f"End of {log}:\n{_tail(log)}"
            )
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.5)
    raise StackError(f"the api-server did not answer {url} within {timeout:.0f} s: see {logs}/")


def supervise(
    processes: dict[str, subprocess.Popen[bytes]],
    logs: Path,
    postgres: Postgres | None,
    stopping: list[int],
    every: float = 1.0,
) -> None:
    """Return when asked to stop; raise StackError naming the first component that exits."""
    while not stopping:
        for name, proc in processes.items():
            if proc.poll() is not None:
                log = logs / f"{name}.log"
                raise StackError(
                    f"the {name} exited (code {proc.returncode}): stopping the stack. "
                    f"End of {log}:\n{_tail(log)}"
                )
        if postgres is not None and not postgres.running():
            log = postgres.root / "postgres.log"
            raise StackError(f"PostgreSQL stopped: stopping the stack. End of {log}:\n{_tail(log)}")
        time.sleep(every)


def health_url() -> str:
    """The api-server's health check on this machine (its configured port)."""
    from airflow.configuration import conf

    return f"http://127.0.0.1:{conf.getint('api', 'port', fallback=8080)}/api/v2/monitor/health"


def run_stack(home: Path, pg_dir: Path, pg_port: int, pool_slots: int) -> int:
    """Start PostgreSQL and Airflow's components; supervise them until one exits or Ctrl-C."""
    postgres = Postgres(pg_dir, pg_port)
    postgres.init()
    postgres.start()
    size = sizing()
    env = {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.ensure_database(),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(size["parallelism"]),
    }
    logs = home / "logs" / "stack"
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        print(f"PostgreSQL on 127.0.0.1:{pg_port} ({postgres.data}); migrating...", flush=True)
        _airflow(env, "db", "migrate")
        _airflow(env, "pools", "set", "codybatch", str(pool_slots), "Cody Batch workers")
        args = ["airflow", "api-server", "--workers", str(size["api_workers"])]
        processes["api-server"] = start("api-server", args, {**env, **API_POOL}, logs)
        wait_for_api(processes["api-server"], health_url(), logs)
        for name in COMPONENTS[1:]:
            processes[name] = start(name, ["airflow", name], env, logs)
        print(
            f"Airflow is starting: {', '.join(COMPONENTS)} (LocalExecutor, parallelism "
            f"{size['parallelism']}); logs in {logs}/. Ctrl-C stops the stack.",
            flush=True,
        )
        supervise(processes, logs, postgres, stopping)
        print("stopping the stack...", flush=True)
        return 0
    except StackError as exc:
        print(f"\nmake up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all(processes)
        postgres.stop()
        print("stack stopped (Airflow and PostgreSQL)", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codybatch.airflow.stack", description=__doc__)
    parser.add_argument(
        "--pg-port", type=int, default=int(os.environ.get("CODYBATCH_PG_PORT", 5439))
    )
    parser.add_argument("--pool-slots", type=int, default=5)
    args = parser.parse_args(argv)
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").resolve()
    pg_dir = Path(os.environ.get("CODYBATCH_PG_DIR") or home / "postgres").resolve()
    try:
        return run_stack(home, pg_dir, args.pg_port, args.pool_slots)
    except StackError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
