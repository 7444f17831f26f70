"""Under load: 20 jobs of 5 repositories sent at once, to `make up`'s stack (PostgreSQL,
LocalExecutor), first through Airflow's REST API, then through the plugin's `POST /jobs`.

Starts a private stack (`python -m codybatch.airflow.stack`, AIRFLOW_HOME under .bench/,
free ports), counts what the store holds at the end: every repository COMPLETED exactly once
(one attempt), no job lost or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR, PYTHON, REPO_ROOT, Figure, median, note, report
from benchmarks.airflow_bench import JOB_DAG, Instance, airflow_env, free_port, ready, tail
from benchmarks.skeleton_bench import SED_STEP, Sizes, small_repos

JOBS = 20
TRIGGER_TIMEOUT = 180  # seconds a trigger may take on a busy machine before it counts as refused
FINAL = ("COMPLETED", "PARTIAL", "FAILED", "CANCELLED")


@dataclass
class Outcome:
    """What one way of submitting gave: accepted triggers, repositories done, timings."""

    accepted: int
    refused: list[str]
    completed: int
    repositories: int
    attempts_over_one: int
    jobs_in_store: int
    wall: float
    per_job: list[float]
    answer_seconds: list[float] = field(default_factory=list)


@contextlib.contextmanager
def stack(work: Path, repos_root: Path) -> Iterator[Instance]:
    """A private `make up` stack (plugin included), stopped on exit with PostgreSQL."""
    shutil.rmtree(work / "home", ignore_errors=True)
    shutil.rmtree(work / "codybatch-home", ignore_errors=True)
    (work / "home").mkdir(parents=True)
    (work / "home" / "passwords.json").write_text('{"admin": "admin"}')
    dags = work / "dags"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir()
    shutil.copy(REPO_ROOT / "dags" / f"{JOB_DAG}.py", dags / f"{JOB_DAG}.py")
    port = free_port()
    env = airflow_env(work, repos_root, port)
    env.update(
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO_ROOT / "plugins"),
        AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.2",
        CODYBATCH_PG_PORT=str(free_port()),
    )
    log = work / "stack.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "codybatch.airflow.stack"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    instance = Instance(f"http://127.0.0.1:{port}", process, log)  # type: ignore[arg-type]
    try:
        yield instance
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # the supervisor stops Airflow and PostgreSQL
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _at_once(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[float]]:
    """Run the calls concurrently: each one's result (or the exception it raised) and seconds."""

    def guarded(call: Callable[[], Any]) -> tuple[Any, float]:
        start = time.perf_counter()
        try:
            return call(), time.perf_counter() - start
        except Exception as exc:
            return exc, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        done = list(pool.map(guarded, calls))
    return [answer for answer, _ in done], sorted(seconds for _, seconds in done)


def _wait_for_jobs(
    instance: Instance, job_ids: list[str], started: float, timeout: float
) -> dict[str, float]:
    """Poll the plugin API until every job is final; seconds from the burst to each end."""
    ends: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ends) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id in ends:
                continue
            with contextlib.suppress(Exception):
                job = instance.request("GET", f"/codybatch/api/v1/jobs/{job_id}")
                if job["status"] in FINAL:
                    ends[job_id] = time.perf_counter() - started
        time.sleep(1)
    return ends


def _count(work: Path, job_ids: list[str], ends: dict[str, float], wall: float) -> Outcome:
    """Read the store itself: what each job's repositories ended as, and how often they ran."""
    from codybatch.store.local import LocalStore

    store = LocalStore(work / "codybatch-home")
    results = [r for job_id in job_ids for r in store.list_results(job_id)]
    return Outcome(
        accepted=len(job_ids),
        refused=[],
        completed=sum(1 for r in results if r.status.value == "COMPLETED"),
        repositories=len(results),
        attempts_over_one=sum(1 for r in results if r.attempts > 1),
        jobs_in_store=sum(1 for job_id in set(job_ids) if store.get_job(job_id) is not None),
        wall=wall,
        per_job=sorted(ends.values()),
    )


def through_rest(instance: Instance, work: Path, conf: dict[str, Any], timeout: float) -> Outcome:
    """20 `POST /api/v2/dags/codybatch_job/dagRuns` at once."""
    from codybatch.records import job_id_for_run

    conf = {**conf, "name": f"{conf['name']} via REST"}
    body = {"logical_date": None, "conf": conf}
    path = f"/api/v2/dags/{JOB_DAG}/dagRuns"
    started = time.perf_counter()
    answers, seconds = _at_once(
        [lambda: instance.request("POST", path, body, TRIGGER_TIMEOUT)] * JOBS
    )
    refused = [repr(a)[:120] for a in answers if not isinstance(a, dict)]
    # Count the runs Airflow holds, not the answers: a late answer may still have made a run.
    listed = instance.request("GET", f"{path}?limit=100", timeout=TRIGGER_TIMEOUT)["dag_runs"]
    runs = [r["dag_run_id"] for r in listed if (r.get("conf") or {}).get("name") == conf["name"]]
    job_ids = [job_id_for_run(JOB_DAG, run_id) for run_id in runs]
    ends = _wait_for_jobs(instance, job_ids, started, timeout)
    outcome = _count(work, job_ids, ends, time.perf_counter() - started)
    outcome.accepted = len(answers) - len(refused)
    outcome.refused = refused
    outcome.answer_seconds = seconds
    return outcome


def through_plugin(instance: Instance, work: Path, conf: dict[str, Any], timeout: float) -> Outcome:
    """20 plugin `POST /codybatch/api/v1/jobs` at once."""
    conf = {**conf, "name": f"{conf['name']} via the plugin"}
    path = "/codybatch/api/v1/jobs"
    started = time.perf_counter()
    answers, seconds = _at_once(
        [lambda: instance.request("POST", path, conf, TRIGGER_TIMEOUT)] * JOBS
    )
    created = [a for a in answers if isinstance(a, dict) and "job_id" in a]
    refused = [repr(a)[:120] for a in answers if not (isinstance(a, dict) and "job_id" in a)]
    job_ids = [c["job_id"] for c in created]
    ends = _wait_for_jobs(instance, job_ids, started, timeout)
    outcome = _count(work, job_ids, ends, time.perf_counter() - started)
    outcome.refused = refused
    outcome.answer_seconds = seconds
    return outcome


def show(label: str, outcome: Outcome, figures: list[Figure]) -> None:
    total = JOBS * 5
    report(
        Figure(
            f"{label}: {JOBS} jobs x 5 repositories sent at once, repositories completed",
            f"{outcome.completed} of {total}",
            f"{total} of {total}",
            outcome.completed == total,
        ),
        figures,
    )
    refused = f" (refused: {outcome.refused[:3]})" if outcome.refused else ""
    answers = outcome.answer_seconds
    note(
        f"triggers answered {outcome.accepted} of {JOBS}{refused}, in "
        f"{answers[0]:.1f}-{answers[-1]:.1f} s (median {median(answers):.1f} s)"
    )
    note(
        f"jobs in the store {outcome.jobs_in_store} of {JOBS} sent, with "
        f"{outcome.repositories} repositories; repositories run more than once "
        f"{outcome.attempts_over_one}"
    )
    if outcome.per_job:
        note(
            f"wall {outcome.wall:.0f} s; per job (burst to final) min {outcome.per_job[0]:.0f} s, "
            f"median {median(outcome.per_job):.0f} s, max {outcome.per_job[-1]:.0f} s"
        )
        note("per job s: " + " ".join(f"{s:.0f}" for s in outcome.per_job))


def run(bench_dir: Path = BENCH_DIR, timeout: float = 900, via: str = "both") -> list[Figure]:
    figures: list[Figure] = []
    print("== under load: make up's stack (PostgreSQL, LocalExecutor) ==", flush=True)
    repos = small_repos(bench_dir, Sizes())
    conf = {"name": "load bench", "steps": [SED_STEP], "repositories": [str(p) for p in repos]}
    work = bench_dir / "load"
    started = time.perf_counter()
    try:
        with stack(work, repos[0].parent) as instance:
            ready(instance, [JOB_DAG])
            note(f"stack up and the DAG parsed in {time.perf_counter() - started:.0f} s")
            if via in ("rest", "both"):
                show("Airflow REST API", through_rest(instance, work, conf, timeout), figures)
            if via in ("plugin", "both"):
                show("plugin POST /jobs", through_plugin(instance, work, conf, timeout), figures)
    except (RuntimeError, OSError) as exc:
        report(Figure("under load", f"not measured: {exc}\n{tail(work / 'stack.log')}"), figures)
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900, help="seconds per burst")
    parser.add_argument("--via", choices=("rest", "plugin", "both"), default="both")
    args = parser.parse_args(argv or [])
    return run(timeout=args.timeout, via=args.via)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
