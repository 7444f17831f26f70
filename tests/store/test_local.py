"""LocalStore: the Store contract on SQLite + files, and several worker processes at once."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codybatch.fleet_records import ErrorClass, FleetStatus
from codybatch.records import (
    CommandRun,
    Job,
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    expiry,
)
from codybatch.settings import Settings
from codybatch.store import JobCursor, NotFoundError, StaleWriteError, open_store
from codybatch.store.local import LocalStore

T0 = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
REPOS = ["github.com/acme/zeta", "github.com/acme/alpha", "/srv/git/local repo"]


def job_at(job_id: str, created_at: datetime = T0, repositories: list[str] | None = None) -> Job:
    spec = {"name": f"Job {job_id}", "prompt": "p", "repositories": repositories or REPOS}
    return Job(
        job_id=job_id,
        spec=spec,
        created_at=created_at,
        updated_at=created_at,
        expires_at=expiry(created_at),
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def local_store(home: Path) -> LocalStore:
    return LocalStore(home)


def test_open_store_gives_a_local_store_under_codybatch_home(tmp_path: Path) -> None:
    store = open_store(Settings.from_env({"CODYBATCH_HOME": str(tmp_path / "h")}))
    assert isinstance(store, LocalStore)
    assert (tmp_path / "h/codybatch.db").exists()


def test_database_is_in_wal_mode(local_store: LocalStore) -> None:
    db = sqlite3.connect(local_store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


# jobs


def test_create_and_get_job(local_store: LocalStore) -> None:
    job = job_at("job-1")
    job.dag_id, job.run_id, job.usage = "codybatch_job", "manual__1", Usage(1, 2, 3, 4, 0.5)
    assert local_store.create_job(job) == job
    assert local_store.get_job("job-1") == job
    assert local_store.get_job("job-missing") is None


def test_create_job_writes_pending_results_in_order(local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    results = local_store.list_results("job-1")
    assert [r.repository for r in results] == REPOS
    assert all(r.status == RepositoryStatus.PENDING and r.revision == 0 for r in results)
    assert all(r.expires_at == T0 + timedelta(days=30) for r in results)


def test_create_job_is_idempotent(local_store: LocalStore) -> None:
    first = local_store.create_job(job_at("job-1"))
    result = local_store.get_result("job-1", REPOS[0])
    assert result is not None
    result.status = RepositoryStatus.RUNNING
    local_store.save_result(result)
    again = job_at("job-1", created_at=T0 + timedelta(hours=1), repositories=["acme/other"])
    assert local_store.create_job(again) == first
    results = local_store.list_results("job-1")
    assert [r.repository for r in results] == REPOS
    assert results[0].status == RepositoryStatus.RUNNING and results[0].revision == 1
    assert len(local_store.list_jobs()) == 1


def test_list_jobs_newest_first_by_status_with_pages(local_store: LocalStore) -> None:
    for i in range(5):
        local_store.create_job(job_at(f"job-{i}", created_at=T0 + timedelta(minutes=i)))
    local_store.update_job("job-1", status=JobStatus.COMPLETED)
    local_store.update_job("job-3", status="COMPLETED")
    assert [j.job_id for j in local_store.list_jobs()] == [f"job-{i}" for i in (4, 3, 2, 1, 0)]
    assert [j.job_id for j in local_store.list_jobs(JobStatus.COMPLETED)] == ["job-3", "job-1"]
    assert [j.job_id for j in local_store.list_jobs(status=JobStatus.PENDING)] == [
        "job-4",
        "job-2",
        "job-0",
    ]
    assert [j.job_id for j in local_store.list_jobs(limit=2, offset=1)] == ["job-3", "job-2"]
    assert local_store.list_jobs(status=JobStatus.CANCELLED) == []


def test_update_job(local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    job = local_store.update_job(
        "job-1", status="RUNNING", usage={"input_tokens": 5, "usd": 0.1}, error="x", run_id="r"
    )
    assert job.status == JobStatus.RUNNING and job.usage == Usage(5, 0, 0, 0, 0.1)
    assert job.updated_at > T0
    assert local_store.get_job("job-1") == job
    assert [j.job_id for j in local_store.list_jobs(JobStatus.RUNNING)] == ["job-1"]
    with pytest.raises(NotFoundError):
        local_store.update_job("job-missing", status="FAILED")
    with pytest.raises(AttributeError):
        local_store.update_job("job-1", colour="blue")
    with pytest.raises(ValueError):
        local_store.update_job("job-1", status="NOT-A-STATUS")
    assert local_store.get_job("job-1") == job  # a refused update changes nothing


# results


def test_save_result_round_trips_and_bumps_revision(local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    result = local_store.get_result("job-1", REPOS[1])
    assert result is not None
    result.status = RepositoryStatus.COMPLETED
    result.were_changes_necessary = True
    result.usage = Usage(1, 2, 3, 4, 0.25)
    result.steps = [CommandRun(command="sed", output="ünïcode ✓")]
    result.pr_number = 7
    saved = local_store.save_result(result)
    assert saved.revision == 1
    assert local_store.get_result("job-1", REPOS[1]) == saved
    assert [r.repository for r in local_store.list_results("job-1")] == REPOS  # order kept
    assert [r.repository for r in local_store.list_results("job-1", "COMPLETED")] == [REPOS[1]]
    assert local_store.list_results("job-1", RepositoryStatus.FAILED) == []
    assert local_store.get_result("job-1", "github.com/acme/none") is None
    assert local_store.list_results("job-missing") == []


def test_a_stale_write_is_refused_and_changes_nothing(local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    mine = local_store.get_result("job-1", REPOS[0])
    theirs = local_store.get_result("job-1", REPOS[0])
    assert mine is not None and theirs is not None
    theirs.status = RepositoryStatus.CANCELLED
    local_store.save_result(theirs)
    mine.status = RepositoryStatus.COMPLETED
    with pytest.raises(StaleWriteError, match="revision 1, expected 0"):
        local_store.save_result(mine)
    stored = local_store.get_result("job-1", REPOS[0])
    assert stored is not None
    assert stored.status == RepositoryStatus.CANCELLED and stored.revision == 1
    assert mine.revision == 0


def test_a_result_for_a_new_repository_is_appended(local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    local_store.save_result(RepositoryResult("job-1", "github.com/acme/extra"))
    assert [r.repository for r in local_store.list_results("job-1")] == [
        *REPOS,
        "github.com/acme/extra",
    ]
    with pytest.raises(StaleWriteError):
        local_store.save_result(RepositoryResult("job-1", "github.com/acme/extra"))


def test_records_survive_reopening(home: Path, local_store: LocalStore) -> None:
    local_store.create_job(job_at("job-1"))
    local_store.put_patch("job-1", REPOS[0], b"patch")
    reopened = LocalStore(home)
    assert reopened.get_job("job-1") == local_store.get_job("job-1")
    assert reopened.get_patch("job-1", REPOS[0]) == b"patch"


# patches and threads


def test_patches_are_byte_identical_and_kept_apart(local_store: LocalStore) -> None:
    binary = bytes(range(256)) * 40 + b"\r\n\x00 end"
    local_store.put_patch("job-1", REPOS[0], binary)
    local_store.put_patch("job-1", REPOS[2], b"local")
    local_store.put_patch("job-2", REPOS[0], b"other job")
    assert local_store.get_patch("job-1", REPOS[0]) == binary
    assert local_store.get_patch("job-1", REPOS[2]) == b"local"
    assert local_store.get_patch("job-2", REPOS[0]) == b"other job"
    assert local_store.get_patch("job-1", REPOS[1]) is None
    local_store.put_patch("job-1", REPOS[0], b"")
    assert local_store.get_patch("job-1", REPOS[0]) == b""
    # repositories with slashes do not escape the job's directory
    files = sorted(p.relative_to(local_store.home) for p in local_store.home.rglob("*.diff"))
    assert all(len(p.parts) == 4 and p.parts[0] == "jobs" for p in files)
    assert not list(local_store.home.rglob("*.tmp"))


def test_threads_round_trip(local_store: LocalStore) -> None:
    thread = {"messages": [{"role": "user", "content": "héllo ✓"}], "usage": {"n": 1}}
    local_store.put_thread("job-1", REPOS[0], thread)
    assert local_store.get_thread("job-1", REPOS[0]) == thread
    assert local_store.get_thread("job-1", REPOS[1]) is None


# purge


def test_purge_expired_removes_expired_rows_and_files(local_store: LocalStore) -> None:
    old = job_at("job-old", created_at=T0)
    new = job_at("job-new", created_at=T0 + timedelta(days=10))
    for job in (old, new):
        local_store.create_job(job)
        for repo in REPOS:
            local_store.put_patch(job.job_id, repo, b"p")
            local_store.put_thread(job.job_id, repo, {"m": 1})
    local_store.update_job("job-old", status="COMPLETED")  # updates keep the expiry

    assert local_store.purge_expired(now=T0 + timedelta(days=29)) == 0
    assert local_store.purge_expired(now=T0 + timedelta(days=31)) == 1

    assert local_store.get_job("job-old") is None
    assert local_store.list_results("job-old") == []
    assert local_store.get_patch("job-old", REPOS[0]) is None
    assert local_store.get_thread("job-old", REPOS[2]) is None
    assert not (local_store.home / "jobs" / "job-old").exists()
    assert local_store.get_job("job-new") is not None
    assert len(local_store.list_results("job-new")) == 3
    assert local_store.get_patch("job-new", REPOS[2]) == b"p"

    assert local_store.purge_expired(now=T0 + timedelta(days=41)) == 1
    assert local_store.list_jobs() == []
    assert not any((local_store.home / "jobs").iterdir())


def test_purge_now_keeps_fresh_jobs(local_store: LocalStore) -> None:
    local_store.create_job(Job(job_id="job-fresh", spec={"repositories": REPOS}))
    assert local_store.purge_expired() == 0
    assert local_store.get_job("job-fresh") is not None


# several worker processes at once


def _write_many(home: str, job_id: str, repository: str, writes: int) -> int:
    """One worker process: many small updates of its own repository's result."""
    store = LocalStore(Path(home))
    for i in range(writes):
        result = store.get_result(job_id, repository)
        assert result is not None
        result.status = RepositoryStatus.RUNNING if i < writes - 1 else RepositoryStatus.COMPLETED
        result.warnings = [f"writes {i + 1}", f"by {repository}"]
        result.usage = Usage(input_tokens=i + 1)
        store.save_result(result)
        store.put_patch(job_id, repository, f"patch {i} of {repository}".encode())
    return writes


def _increment(home: str, job_id: str, repository: str, writes: int) -> int:
    """One of several processes sharing one result: read-modify-write, retrying stale writes."""
    store = LocalStore(Path(home))
    retries = 0
    done = 0
    while done < writes:
        result = store.get_result(job_id, repository)
        assert result is not None
        result.attempts += 1
        try:
            store.save_result(result)
        except StaleWriteError:
            retries += 1
            continue
        done += 1
    return retries


def _child(target: Any, args: tuple[Any, ...], start: Any, out: Any) -> None:
    start.wait()
    try:
        out.put(("ok", target(*args)))
    except BaseException:
        out.put(("error", traceback.format_exc()))


def _run_processes(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """Run target(*a) for each a in its own spawned process, all released at once."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    processes = [ctx.Process(target=_child, args=(target, a, start, out)) for a in args]
    for p in processes:
        p.start()
    start.set()
    outcomes = [out.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=30)
    errors = [text for kind, text in outcomes if kind == "error"]
    assert not errors, "\n".join(errors)
    return [value for _, value in outcomes]


@pytest.fixture
def five_repo_job(home: Path) -> tuple[LocalStore, list[str]]:
    repos = [f"github.com/acme/r{i}" for i in range(5)]
    store = LocalStore(home)
    store.create_job(job_at("job-c", repositories=repos))
    return store, repos


def test_worker_processes_writing_different_repositories_all_land(
    home: Path, five_repo_job: tuple[LocalStore, list[str]]
) -> None:
    store, repos = five_repo_job
    writes = 40
    # An error in a process ("database is locked", a stale write) is re-raised here.
    done = _run_processes(_write_many, [(str(home), "job-c", r, writes) for r in repos])
    assert done == [writes] * len(repos)
    results = store.list_results("job-c")
    assert [r.repository for r in results] == repos
    for r in results:
        assert r.revision == writes
        assert r.status == RepositoryStatus.COMPLETED
        assert r.warnings == [f"writes {writes}", f"by {r.repository}"]
        assert r.usage.input_tokens == writes
        assert (
            store.get_patch("job-c", r.repository)
            == f"patch {writes - 1} of {r.repository}".encode()
        )


def test_worker_processes_sharing_one_result_lose_no_update(
    home: Path, five_repo_job: tuple[LocalStore, list[str]]
) -> None:
    store, repos = five_repo_job
    writes, processes = 15, 3
    _run_processes(_increment, [(str(home), "job-c", repos[0], writes)] * processes)
    result = store.get_result("job-c", repos[0])
    assert result is not None
    assert result.attempts == writes * processes
    assert result.revision == writes * processes


def test_worker_processes_opening_a_new_store_at_once(home: Path) -> None:
    """First use by several processes together: schema and WAL set-up must not collide."""
    repos = [f"github.com/acme/r{i}" for i in range(4)]
    opened = _run_processes(_open_and_create, [(str(home), r) for r in repos])
    assert sorted(opened) == sorted(repos)
    store = LocalStore(home)
    assert {j.job_id for j in store.list_jobs()} == {f"job-{r[-2:]}" for r in repos}


def _open_and_create(home: str, repository: str) -> str:
    store = LocalStore(Path(home))
    store.create_job(job_at(f"job-{repository[-2:]}", repositories=[repository]))
    result = store.get_result(f"job-{repository[-2:]}", repository)
    assert result is not None
    store.save_result(result)
    return repository


# queries: every list page is answered by an index


def test_every_list_query_is_answered_by_an_index(home: Path) -> None:
    statements: list[str] = []
    store = LocalStore(home, trace=statements.append)
    for i in range(30):
        spec = {"campaign": "weekly"} if i % 2 else {}
        job = job_at(f"job-{i:02}", T0 + timedelta(minutes=i))
        job.spec |= spec
        store.create_job(job)
        result = store.get_result(job.job_id, REPOS[0])
        result.pr_state = "open" if i % 3 else "merged"
        store.save_result(result)
    store.update_job("job-03", status=JobStatus.RUNNING)
    statements.clear()

    cursor = JobCursor.of(store.get_job("job-20"))
    store.list_jobs()
    store.list_jobs(JobStatus.PENDING, limit=5, offset=5)
    store.list_jobs(before=cursor)
    store.list_jobs(JobStatus.RUNNING, before=cursor)
    store.list_jobs(since=T0)
    store.campaign_jobs("weekly")
    store.campaign_jobs("weekly", before=cursor)
    store.campaigns()
    store.results_with_pr_state("open")
    store.list_results("job-01", RepositoryStatus.PENDING)
    store.fleet_page("weekly", after="a")
    store.fleet_page("weekly", status=FleetStatus.FAILED, after="a")
    store.fleet_page("weekly", error_class=ErrorClass.CLONE_FAILED)
    store.fleet_page("weekly", members_only=True)
    store.purge_expired(T0)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) >= 16

    db = sqlite3.connect(store.path)
    try:
        for query in queries:
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query)]
            assert plan, query
            for step in plan:
                assert "INDEX" in step or "PRIMARY KEY" in step, (query, plan)
                assert "TEMP B-TREE" not in step, (query, plan)  # the index gives the order
    finally:
        db.close()


def old_database(home: Path) -> None:
    """A database as the first release wrote it: no campaign or PR state columns."""
    home.mkdir(parents=True)
    db = sqlite3.connect(home / "codybatch.db")
    db.executescript(
        """
        CREATE TABLE jobs (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,
            created_at REAL NOT NULL, expires_at REAL NOT NULL, data TEXT NOT NULL);
        CREATE INDEX jobs_status_created ON jobs (status, created_at);
        CREATE INDEX jobs_created ON jobs (created_at);
        CREATE TABLE results (job_id TEXT NOT NULL, repository TEXT NOT NULL,
            position INTEGER NOT NULL, status TEXT NOT NULL, revision INTEGER NOT NULL,
            expires_at REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, repository));
        CREATE INDEX results_status ON results (status);
        """
    )
    for i, campaign in enumerate(("weekly", None, "weekly", "")):
        job = job_at(f"job-{i}", T0 + timedelta(hours=i))
        if campaign is not None:
            job.spec["campaign"] = campaign
        job.dag_id = "codybatch_job" if i == 2 else None
        row = (job.job_id, "PENDING", job.created_at.timestamp(), job.expires_at.timestamp())
        db.execute("INSERT INTO jobs VALUES (?,?,?,?,?)", (*row, json.dumps(job.to_dict())))
        for position, result in enumerate(job.pending_results()):
            result.pr_state = "open" if position == 1 else None
            db.execute(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    result.repository,
                    position,
                    "PENDING",
                    0,
                    row[3],
                    json.dumps(result.to_dict()),
                ),
            )
    db.commit()
    db.close()


def test_an_old_database_gets_the_new_columns_and_indexes_on_open(home: Path) -> None:
    old_database(home)
    store = LocalStore(home)
    assert [j.job_id for j in store.campaign_jobs("weekly")] == ["job-2", "job-0"]
    assert store.campaigns() == {"weekly": {"codybatch_job": 1, None: 1}}
    assert [r.job_id for r in store.results_with_pr_state("open")] == [
        f"job-{i}" for i in (3, 2, 1, 0)
    ]
    assert [j.job_id for j in store.list_jobs()] == ["job-3", "job-2", "job-1", "job-0"]
    db = sqlite3.connect(store.path)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    db.close()
    assert {"jobs_by_status", "jobs_by_campaign", "results_by_pr_state"} <= indexes
    assert not {"jobs_status_created", "jobs_created"} & indexes  # superseded, dropped
    assert store.migrate() == 0 and LocalStore(home).campaigns() == {
        "weekly": {"codybatch_job": 1, None: 1}
    }


def test_opening_an_old_database_from_several_processes_migrates_it_once(home: Path) -> None:
    old_database(home)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        counts = pool.map(_open_and_count, [str(home)] * 4)
    assert counts == [{"weekly": {"codybatch_job": 1, None: 1}}] * 4


def _open_and_count(home: str) -> dict[str, dict[str | None, int]]:
    return LocalStore(Path(home)).campaigns()
