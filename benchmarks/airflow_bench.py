"""Through Airflow: a 5-repository codybatch_job vs trivial 5-way mapped DAGs, one instance.

Starts a private `airflow standalone` (AIRFLOW_HOME under .bench/, free ports), triggers
each DAG over the REST API, polls each run to its end, and stops the instance at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    BENCH_DIR,
    PYTHON,
    REPO_ROOT,
    Figure,
    at_most,
    clean_env,
    median,
    note,
    report,
    spread,
)
from benchmarks.skeleton_bench import SED_STEP, Sizes, small_repos

JOB_DAG = "codybatch_job"
MINIMAL_DAG = "bench_mapped_minimal"
SHAPED_DAG = "bench_mapped_shaped"
FINISHED = ("success", "failed")

# Two baselines: the smallest 5-way mapped DAG, and one shaped like codybatch_job
# (validate -> register -> process x5 in the same pool -> finalize) doing nothing.
TRIVIAL_DAGS = f'''"""Baselines of the Airflow benchmark (from benchmarks/airflow_bench.py)."""

from airflow.sdk import DAG, task


def _echo(repository):
    return repository


with DAG("{MINIMAL_DAG}", schedule=None, catchup=False, max_active_runs=16, tags=["bench"]):
    task(_echo, task_id="process").expand(repository=[f"repo-{{i}}" for i in range(5)])


@task
def validate():
    return 5


@task
def register(count):
    return [{{"repository": f"repo-{{i}}"}} for i in range(count)]


@task(trigger_rule="all_done")
def finalize(items):
    return "COMPLETED"


with DAG("{SHAPED_DAG}", schedule=None, catchup=False, max_active_runs=16, tags=["bench"]):
    items = register(validate())
    processed = task(
        _echo,
        task_id="process",
        pool="codybatch",
        retries=1,
        map_index_template="{{{{ task.op_kwargs['repository'] }}}}",
    ).expand_kwargs(items)
    processed >> finalize(items)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Instance:
    """A running airflow standalone and how to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str = ""

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        """Poll check() until it returns a true value; raise with the log tail after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited:\n{tail(self.log)}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                value = check()
                if value:
                    return value
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}:\n{tail(self.log)}")

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float = 300) -> Run:
        """Trigger a run and poll it to its end."""
        start = time.perf_counter()
        run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
        state = "timeout"
        while time.perf_counter() - start < timeout:
            run = self.request("GET", path)
            if run["state"] in FINISHED:
                state = run["state"]
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        tis = self.request("GET", f"{path}/taskInstances")["task_instances"]
        return Run(seconds, state, stage_spans(run, tis))


@dataclass
class Run:
    """One DAG run: seconds from trigger to finished, its state, and seconds per task."""

    seconds: float
    state: str
    stages: dict[str, float]


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else 0.0


def stage_spans(run: dict[str, Any], tis: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds each task ran (first start to last end over its mapped instances);
    "(scheduling)" is the rest of the run, from queued to end."""
    spans: dict[str, list[float]] = {}
    for ti in tis:
        if ti.get("start_date") and ti.get("end_date"):
            span = spans.setdefault(ti["task_id"], [_ts(ti["start_date"]), _ts(ti["end_date"])])
            span[0] = min(span[0], _ts(ti["start_date"]))
            span[1] = max(span[1], _ts(ti["end_date"]))
    stages = {task_id: end - start for task_id, (start, end) in spans.items()}
    total = _ts(run.get("end_date")) - _ts(run.get("queued_at"))
    stages["(scheduling)"] = total - sum(stages.values())
    return stages


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def airflow_env(work: Path, repos_root: Path, port: int) -> dict[str, str]:
    home = work / "home"
    # Scheduler tuning the Makefile (as for `make up`) may export applies here too.
    tuning = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__SCHEDULER__")}
    return clean_env(
        **tuning,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(work / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(work / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        # Other Airflow instances on this machine may hold the default log-server ports.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        CODYBATCH_HOME=str(work / "codybatch-home"),
        CODYBATCH_ALLOWED_REPOSITORIES=f"{repos_root}/*",
    )


def prepare(work: Path, plugins: bool = False, campaigns: Path | None = None) -> None:
    """The DAGs folder (codybatch_job + the baselines, and campaigns), a plugins folder
    (Cody Batch's with `plugins`, else empty), passwords."""
    dags = work / "dags"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dags" / f"{JOB_DAG}.py", dags / f"{JOB_DAG}.py")
    shutil.copy(REPO_ROOT / "dags" / "codybatch_campaigns.py", dags / "codybatch_campaigns.py")
    (dags / "bench_mapped.py").write_text(TRIVIAL_DAGS)
    (work / "plugins").mkdir(exist_ok=True)
    if plugins:
        shutil.copy(REPO_ROOT / "plugins" / "codybatch_plugin.py", work / "plugins")
    if campaigns is not None:
        from codybatch.airflow.campaigns import sync_campaign_stubs

        # Written now: the dag-processor lists new files only every few minutes.
        sync_campaign_stubs(campaigns, dags / "campaigns")
    (work / "home").mkdir(parents=True, exist_ok=True)
    (work / "home" / "passwords.json").write_text('{"admin": "admin"}')


def _airflow(env: dict[str, str], *args: str) -> None:
    airflow = str(Path(PYTHON).parent / "airflow")
    proc = subprocess.run([airflow, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def standalone(
    work: Path,
    repos_root: Path,
    plugins: bool = False,
    extra: dict[str, str] | None = None,
    campaigns: Path | None = None,
) -> Iterator[Instance]:
    """A private airflow standalone, stopped (whole process group) on exit."""
    prepare(work, plugins, campaigns)
    port = free_port()
    env = {**airflow_env(work, repos_root, port), **(extra or {})}
    _airflow(env, "db", "migrate")
    _airflow(env, "pools", "set", "codybatch", "5", "Cody Batch workers")
    log = work / "standalone.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(PYTHON).parent / "airflow"), "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so everything it starts stops too
        )
    instance = Instance(f"http://127.0.0.1:{port}", process, log)
    try:
        yield instance
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C first (standalone stops its components), then TERM and KILL the group."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Components outlive their parent for a moment: make sure none is left.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
            time.sleep(2)


def ready(instance: Instance, dag_ids: Sequence[str]) -> None:
    """Wait for the API, a token, a healthy scheduler and the DAGs parsed and unpaused."""

    def token() -> str:
        body = {"username": "admin", "password": "admin"}
        return instance.request("POST", "/auth/token", body)["access_token"]

    instance.token = instance.wait_for("the API server and a token", token, 240)

    def healthy() -> bool:
        health = instance.request("GET", "/api/v2/monitor/health")
        return health["scheduler"]["status"] == "healthy"

    instance.wait_for("a healthy scheduler", healthy, 120)
    for dag_id in dag_ids:
        dag = instance.wait_for(
            f"DAG {dag_id}", lambda d=dag_id: instance.request("GET", f"/api/v2/dags/{d}"), 180
        )
        if dag.get("is_paused"):
            instance.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def run(bench_dir: Path = BENCH_DIR, repeat: int = 5) -> list[Figure]:
    """Measure and print the Airflow figures; return them."""
    figures: list[Figure] = []
    print("== through Airflow (standalone) ==", flush=True)
    repos = small_repos(bench_dir, Sizes())
    conf = {"name": "bench airflow", "steps": [SED_STEP], "repositories": [str(p) for p in repos]}
    dags = {JOB_DAG: conf, SHAPED_DAG: {}, MINIMAL_DAG: {}}
    runs: dict[str, list[Run]] = {d: [] for d in dags}
    work = bench_dir / "airflow"
    started = time.perf_counter()
    try:
        with standalone(work, repos[0].parent) as instance:
            ready(instance, list(dags))
            note(f"standalone up and DAGs parsed in {time.perf_counter() - started:.0f} s")
            tuning = [k for k in os.environ if k.startswith("AIRFLOW__SCHEDULER__")]
            if tuning:
                note(f"scheduler settings from the environment: {', '.join(sorted(tuning))}")
            for rep in range(repeat + 1):  # the first round warms up
                for dag_id, dag_conf in dags.items():
                    result = instance.run_dag(dag_id, dag_conf)
                    if rep:
                        runs[dag_id].append(result)
    except (RuntimeError, OSError, urllib.error.URLError) as exc:
        report(Figure("codybatch_job through Airflow", f"not measured: {exc}"), figures)
        return figures
    failed = {
        d: [r.state for r in rs] for d, rs in runs.items() if any(r.state != "success" for r in rs)
    }
    if failed:
        note(f"WARNING: runs that did not succeed: {failed} (see {work}/home/logs)")
    times = {d: [r.seconds for r in rs] for d, rs in runs.items()}
    if not times[JOB_DAG]:
        return figures
    job = median(times[JOB_DAG])
    baselines = (
        (MINIMAL_DAG, "trivial 5-way mapped DAG (one mapped task)"),
        (SHAPED_DAG, "no-op DAG of the same shape (4 stages, same pool)"),
    )
    for baseline, label in baselines:
        base = median(times[baseline])
        report(
            at_most(
                f"codybatch_job, 5 repositories, trigger to finished, vs a {label}",
                job / base,
                1.3,
                detail=f"({job:.1f} s vs {base:.1f} s)",
            ),
            figures,
        )
    note(
        "each stage of a run waits for a scheduler loop (scheduler_idle_sleep_time, 1 s by "
        "default): see (scheduling) below"
    )
    for dag_id, dag_runs in runs.items():
        if not dag_runs:
            continue
        note(f"{dag_id}: {spread(times[dag_id])}")
        stages = {k: median([r.stages.get(k, 0.0) for r in dag_runs]) for k in dag_runs[0].stages}
        note("  median s per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per DAG (default 5)")
    args = parser.parse_args(argv or [])
    return run(repeat=args.repeat)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
