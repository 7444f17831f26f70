"""A campaign at fleet scale through `airflow standalone`, against the fake GitHub.

N repositories (default 50, about 5 minutes; `--repositories 500` for the full figure, about
27 minutes on 2 busy cores) get a shell step and pull requests, paced by the campaign's
rollout. A second campaign run, with everything done, must launch nothing and clone nothing.
Then the plugin's campaign API and page are timed on a fleet of 500 with 10,000 stored
results, and the store-side cost of planning a run is measured at 50 and 500 repositories,
with and without history.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR, Figure, at_most, note, report
from benchmarks.airflow_bench import JOB_DAG, ready, standalone

CAMPAIGN = "bench_fleet"
DAG_ID = f"codybatch_campaign__{CAMPAIGN}"
STEP = "sed -i s/oldFunction/newFunction/g app.py"


def campaign_file(keys: list[str], rate: str, concurrent: int) -> str:
    listing = "\n".join(f"  - {key}" for key in keys)
    return (
        "schedule: '@yearly'\n"
        "start_date: 2026-01-01\n"
        "name: Bench fleet change\n"
        f"steps: [{STEP!r}]\n"
        "create_pull_requests: true\n"
        f"rollout: {{rate: {rate}, max_concurrent_jobs: {concurrent}}}\n"
        f"repositories:\n{listing}\n"
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def size_of(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def airflow_db(work: Path) -> list[Path]:
    home = work / "home"
    return [home / "airflow.db", home / "airflow.db-wal"]


def store_files(work: Path) -> list[Path]:
    home = work / "codybatch-home"
    return [home / "codybatch.db", home / "codybatch.db-wal", home / "jobs"]


def max_in_window(times: list[float], period: float) -> int:
    """The most events inside any window of `period` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_campaign(instance: Any, store: Any, keys: int, timeout: float) -> tuple[float, str]:
    """Trigger the campaign and wait for its run and every job it launched to finish."""
    from codybatch.fleet_records import IN_FLIGHT

    started = time.perf_counter()
    run = instance.request(
        "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {}}
    )
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"
    state = "timeout"
    while time.perf_counter() - started < timeout:
        try:
            state = instance.request("GET", path)["state"]
        except OSError:  # a busy API server: look again
            time.sleep(5)
            continue
        entries = store.fleet(CAMPAIGN)
        busy = [e for e in entries if e.status in IN_FLIGHT]
        if state in ("success", "failed") and not busy and len(entries) == keys:
            break
        time.sleep(2)
    return time.perf_counter() - started, state


def job_runs(instance: Any) -> list[dict[str, Any]]:
    runs = instance.request("GET", f"/api/v2/dags/{JOB_DAG}/dagRuns?limit=1000")["dag_runs"]
    return [r for r in runs if r["dag_run_id"].startswith(f"campaign__{CAMPAIGN}__")]


def seconds(value: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else 0.0


def timed_get(url: str, token: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
        times.append((time.perf_counter() - start) * 1000)
    return times


def seed_history(store: Any, name: str, repositories: int, results: int) -> None:
    """A campaign fleet of `repositories` and `results` stored repository results."""
    from codybatch import fleet
    from codybatch.fleet_records import ErrorClass, FleetEntry, FleetStatus
    from codybatch.records import Job

    entries = []
    for i in range(repositories):
        entry = FleetEntry(name, f"github.com/seed/r{i:04d}", status=FleetStatus.COMPLETED)
        entry.pr_state, entry.pr_number, entry.usd, entry.jobs = "open", i, 0.2, 1
        if i % 10 == 0:
            entry.status, entry.error_class = FleetStatus.FAILED, ErrorClass.VERIFY_FAILED
        entries.append(entry)
    store.put_fleet(entries)
    fleet.snapshot(store, name, "seeded")
    for j in range(results // 5):
        keys = [f"github.com/seed/h{j:05d}-{k}" for k in range(5)]
        store.create_job(Job(f"job-seed-{name}-{j:05d}", {"name": "seed", "repositories": keys}))


def planning_cost(work: Path, repositories: int, history: int) -> float:
    """Seconds the store side of one campaign run takes when every repository is done."""
    from codybatch import fleet
    from codybatch.fleet_records import FleetStatus
    from codybatch.store.local import LocalStore

    folder = work / f"plan-{repositories}-{history}"
    shutil.rmtree(folder, ignore_errors=True)
    store = LocalStore(folder)
    seed_history(store, "other", 0, history)
    keys = {f"github.com/acme/r{i:04d}": None for i in range(repositories)}
    entries, _ = fleet.sync_members(store, "c", keys)
    for entry in entries:
        entry.status, entry.spec_revision, entry.base_revision = FleetStatus.COMPLETED, "s", "b"
    store.put_fleet(entries)
    started = time.perf_counter()
    entries, _ = fleet.sync_members(store, "c", keys)
    fleet.refresh(store, entries)
    planned = fleet.plan(store.fleet("c"), "s", dict.fromkeys(keys, "b"), 5)
    fleet.snapshot(store, "c", "run")
    assert planned.batches == []
    return time.perf_counter() - started


def run(
    bench_dir: Path = BENCH_DIR,
    repositories: int = 50,
    rate: str = "60/minute",
    concurrent: int = 4,
) -> list[Figure]:
    from codybatch.rollout import PERIODS
    from codybatch.store.local import LocalStore
    from tests.fakes.github_server import FakeGitHub

    figures: list[Figure] = []
    print(f"== a campaign of {repositories} repositories through Airflow ==", flush=True)
    work = bench_dir / "fleet"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    fake = FakeGitHub(work / "github", token="ghp_bench" + "0" * 32).start()
    keys = []
    for i in range(repositories):
        fake.create_repo(f"acme/r{i:04d}", {"app.py": "oldFunction()\n", "README.md": "x\n"})
        keys.append(f"acme/r{i:04d}")
    note(f"{repositories} repositories on the fake GitHub in {time.perf_counter() - started:.0f} s")
    (work / "campaigns").mkdir()
    (work / "campaigns" / f"{CAMPAIGN}.yaml").write_text(campaign_file(keys, rate, concurrent))
    count, unit = rate.split("/")
    rate_count, period = int(count), PERIODS[unit.removesuffix("s")]
    extra = {
        **fake.env(),
        "CODYBATCH_GITHUB_PR_INTERVAL": "0",  # the rollout alone paces PR creation here
        "CODYBATCH_CAMPAIGNS_DIR": str(work / "campaigns"),
        "CODYBATCH_ALLOWED_REPOSITORIES": "acme/*",
    }
    try:
        with standalone(
            work, work, plugins=True, extra=extra, campaigns=work / "campaigns"
        ) as instance:
            ready(instance, [JOB_DAG, DAG_ID])
            store = LocalStore(work / "codybatch-home")
            db0, store0 = size_of(*airflow_db(work)), size_of(*store_files(work))
            budget = 600 + repositories * 60
            first, state = run_campaign(instance, store, repositories, budget)
            runs = job_runs(instance)
            db1, store1 = size_of(*airflow_db(work)), size_of(*store_files(work))
            git_before = len(fake.git_requests())
            second, state2 = run_campaign(instance, store, repositories, 600)
            runs2 = job_runs(instance)
            _report_runs(
                figures,
                fake,
                store,
                keys,
                runs,
                runs2,
                first,
                second,
                state,
                state2,
                git_before,
                rate_count,
                period,
            )
            note(
                f"metadata DB grew {(db1 - db0) / 1e6:.1f} MB "
                f"({(db1 - db0) / max(1, repositories) / 1e3:.0f} KB a repository), "
                f"store {(store1 - store0) / 1e6:.1f} MB "
                f"({(store1 - store0) / max(1, repositories) / 1e3:.0f} KB a repository)"
            )
            seed_history(store, "seeded", 500, 10_000)
            _report_latency(figures, instance)
    finally:
        fake.stop()
    for size in (50, 500):
        flat = planning_cost(work, size, 0)
        deep = planning_cost(work, size, 10_000)
        note(
            f"store side of a campaign run with {size} repositories, all done: "
            f"{flat * 1000:.0f} ms, {deep * 1000:.0f} ms with 10,000 other results stored"
        )
    return figures


def _report_runs(
    figures: list[Figure],
    fake: Any,
    store: Any,
    keys: list[str],
    runs: list[dict[str, Any]],
    runs2: list[dict[str, Any]],
    first: float,
    second: float,
    state: str,
    state2: str,
    git_before: int,
    rate_count: int,
    period: int,
) -> None:
    entries = store.fleet(CAMPAIGN)
    done = sum(e.status.value == "COMPLETED" for e in entries)
    report(
        Figure("first campaign run, launch to all jobs done", f"{first:.0f} s ({state})"), figures
    )
    note(f"{done} of {len(keys)} repositories COMPLETED in {len(runs)} jobs")
    pulls = {key: len(fake.pulls(key)) for key in keys}
    duplicates = sum(max(0, n - 1) for n in pulls.values())
    report(at_most("duplicate pull requests", duplicates, 0, unit=""), figures)
    created = [
        r.at for r in fake.api_requests("POST", r"^/repos/[^/]+/[^/]+/pulls$") if r.status == 201
    ]
    worst = max_in_window(created, period)
    report(
        at_most(
            f"most PRs opened in any {period} s (rate {rate_count}/{period} s)",
            worst,
            rate_count,
            unit="",
            detail=f"({len(created)} PRs in all)",
        ),
        figures,
    )
    overheads = []
    for entry in entries:
        result = store.get_result(entry.job_id, entry.repository) if entry.job_id else None
        if result and result.started_at and result.finished_at:
            step = sum(s.seconds for s in result.steps)
            overheads.append((result.finished_at - result.started_at).total_seconds() - step)
    if overheads:
        report(
            Figure(
                "Cody Batch's own time per repository in the worker (excluding the step)",
                f"median {statistics.median(overheads):.1f} s, p95 {p95(overheads):.1f} s",
            ),
            figures,
        )
    lags = [seconds(r["start_date"]) - seconds(r["queued_at"]) for r in runs if r["start_date"]]
    if lags:
        note(
            f"scheduler lag (queued to running) of job runs: "
            f"median {statistics.median(lags):.1f} s, p95 {p95(lags):.1f} s"
        )
    report(Figure("second campaign run (everything done)", f"{second:.0f} s ({state2})"), figures)
    report(at_most("jobs launched by the second run", len(runs2) - len(runs), 0, unit=""), figures)
    report(
        at_most(
            "git requests (clones) by the second run",
            len(fake.git_requests()) - git_before,
            0,
            unit="",
        ),
        figures,
    )


def _report_latency(figures: list[Figure], instance: Any) -> None:
    base = instance.url + "/codybatch"
    routes = {
        "campaign fleet API (a page of 50)": "/api/v1/campaigns/seeded/repositories?limit=50",
        "campaign fleet API, failed only": "/api/v1/campaigns/seeded/repositories?status=FAILED",
        "campaign API (roll-up, burndown)": "/api/v1/campaigns/seeded",
        "campaign page": "/campaigns/seeded",
        "campaigns list page": "/campaigns",
        "campaigns API": "/api/v1/campaigns",
        "jobs page": "/",
        "jobs API": "/api/v1/jobs",
    }
    for label, route in routes.items():
        times = timed_get(base + route, instance.token, 40)
        report(
            at_most(
                f"{label}, 500 repositories, 10,000 results: p95",
                p95(times),
                300,
                unit=" ms",
                detail=f"(median {statistics.median(times):.0f} ms)",
            ),
            figures,
        )


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=50, help="fleet size (default 50)")
    parser.add_argument("--rate", default="60/minute", help="rollout rate (default 60/minute)")
    parser.add_argument("--concurrent", type=int, default=4, help="max_concurrent_jobs")
    args = parser.parse_args(argv or [])
    return run(repositories=args.repositories, rate=args.rate, concurrent=args.concurrent)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
