"""The local store: SQLite (WAL) for records, plain files for patches and threads."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from codybatch.fleet_records import ErrorClass, FleetCounts, FleetEntry, FleetStatus
from codybatch.records import (
    Job,
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    Usage,
    utcnow,
)
from codybatch.store.base import (
    JobCursor,
    NotFoundError,
    StaleWriteError,
    Store,
    campaign_of,
    newest_first,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, repository)
);
CREATE TABLE IF NOT EXISTS fleet (
    campaign TEXT NOT NULL,
    repository TEXT NOT NULL,
    status TEXT NOT NULL,
    error_class TEXT,
    member INTEGER NOT NULL,
    pr_state TEXT,
    usd REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (campaign, repository)
);
CREATE INDEX IF NOT EXISTS fleet_status ON fleet (campaign, status, repository);
CREATE INDEX IF NOT EXISTS fleet_error ON fleet (campaign, error_class, repository);
CREATE TABLE IF NOT EXISTS campaign_state (
    campaign TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""

# Columns added after the first release: (table, column, its value from the row's JSON).
# A database from before them gets them on open, filled from the stored records.
ADDED_COLUMNS = (
    (
        "jobs",
        "campaign",
        "CASE WHEN json_type(data, '$.spec.campaign') = 'text'"
        " THEN NULLIF(json_extract(data, '$.spec.campaign'), '') END",
    ),
    ("results", "pr_state", "json_extract(data, '$.pr_state')"),
    ("jobs", "dag_id", "json_extract(data, '$.dag_id')"),
)

# Every list query has its index, in its order (tests/store/test_local.py runs EXPLAIN QUERY
# PLAN on each). The job id closes each key so keyset pages need no sort.
INDEXES = """
DROP INDEX IF EXISTS jobs_status_created;
DROP INDEX IF EXISTS jobs_created;
DROP INDEX IF EXISTS results_status;
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_campaign ON jobs (campaign, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_campaign_dag ON jobs (campaign, dag_id);
CREATE INDEX IF NOT EXISTS results_by_job ON results (job_id, position);
CREATE INDEX IF NOT EXISTS results_by_pr_state ON results (pr_state);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at);
CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires_at);
"""

JOBS_QUERY = "SELECT data FROM jobs"
CAMPAIGNS_QUERY = (
    "SELECT campaign, dag_id, COUNT(*) FROM jobs WHERE campaign IS NOT NULL"
    " GROUP BY campaign, dag_id"
)
PR_STATE_QUERY = "SELECT data FROM results WHERE pr_state=?"

JOB_COLUMNS = "job_id, status, created_at, expires_at, data, campaign, dag_id"
RESULT_COLUMNS = "job_id, repository, position, status, revision, expires_at, data, pr_state"


class LocalStore(Store):
    """SQLite + files under `home`; safe for several worker processes at once."""

    def __init__(self, home: Path, trace: Callable[[str], None] | None = None):
        self.home = Path(home)
        self.trace = trace  # called with each SQL statement run (to debug, or check plans)
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "codybatch.db"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            missing = self._missing_columns(db)
        if missing:
            self.migrate()
        with self._connect() as db:
            db.executescript(INDEXES)

    @staticmethod
    def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
        have = {
            table: {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for table in ("jobs", "results")
        }
        return [added for added in ADDED_COLUMNS if added[1] not in have[added[0]]]

    def migrate(self) -> int:
        """Add the columns a database from before them lacks, filled from its records."""
        changed = 0
        with self._connect(write=True) as db:
            for table, column, value in self._missing_columns(db):  # again, under the lock
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                changed += db.execute(f"UPDATE {table} SET {column} = {value}").rowcount
        return changed

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.set_trace_callback(self.trace)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            if write:
                # Take the write lock up front so read-modify-write cannot interleave.
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if write:
                    db.execute("ROLLBACK")
                raise
            if write:
                db.execute("COMMIT")
        finally:
            db.close()

    # jobs

    def create_job(self, job: Job) -> Job:
        with self._connect(write=True) as db:
            row = db.execute("SELECT data FROM jobs WHERE job_id=?", (job.job_id,)).fetchone()
            if row:
                return Job.from_dict(json.loads(row[0]))
            db.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    job.status.value,
                    job.created_at.timestamp(),
                    job.expires_at.timestamp(),
                    json.dumps(job.to_dict()),
                    campaign_of(job),
                    job.dag_id,
                ),
            )
            for position, result in enumerate(job.pending_results()):
                db.execute(
                    f"INSERT OR IGNORE INTO results ({RESULT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        job.job_id,
                        result.repository,
                        position,
                        result.status.value,
                        0,
                        result.expires_at.timestamp(),
                        json.dumps(result.to_dict()),
                        result.pr_state,
                    ),
                )
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row[0])) if row else None

    def list_jobs(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        before: JobCursor | None = None,
        since: datetime | None = None,
    ) -> list[Job]:
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status=?")
            args.append(JobStatus(status).value)
        if since is not None:
            where.append("created_at>=?")
            args.append(since.timestamp())
        return self._jobs(where, args, limit, offset, before)

    def campaign_jobs(
        self, campaign: str, limit: int = 50, before: JobCursor | None = None
    ) -> list[Job]:
        return self._jobs(["campaign=?"], [campaign], limit, 0, before)

    def _jobs(
        self, where: list[str], args: list[Any], limit: int, offset: int, before: JobCursor | None
    ) -> list[Job]:
        if before is not None:
            where = [*where, "(created_at, job_id) < (?, ?)"]
            args = [*args, before.created_at.timestamp(), before.job_id]
        query = JOBS_QUERY + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY created_at DESC, job_id DESC LIMIT ? OFFSET ?"
        with self._connect() as db:
            rows = db.execute(query, (*args, limit, offset)).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    def campaigns(self) -> dict[str, dict[str | None, int]]:
        found: dict[str, dict[str | None, int]] = {}
        with self._connect() as db:
            for campaign, dag_id, count in db.execute(CAMPAIGNS_QUERY):
                found.setdefault(campaign, {})[dag_id] = count
        return found

    def update_job(
        self, job_id: str, only_from: Iterable[JobStatus] | None = None, **fields: Any
    ) -> Job:
        with self._connect(write=True) as db:
            row = db.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if not row:
                raise NotFoundError(f"job {job_id} not found")
            job = Job.from_dict(json.loads(row[0]))
            if only_from is not None and job.status not in set(only_from):
                return job
            for name, value in fields.items():
                if not hasattr(job, name):
                    raise AttributeError(f"Job has no field {name!r}")
                if name == "status":
                    value = JobStatus(value)
                elif name == "usage" and isinstance(value, dict):
                    value = Usage.from_dict(value)
                setattr(job, name, value)
            job.updated_at = utcnow()
            db.execute(
                "UPDATE jobs SET status=?, data=?, campaign=?, dag_id=? WHERE job_id=?",
                (job.status.value, json.dumps(job.to_dict()), campaign_of(job), job.dag_id, job_id),
            )
        return job

    # results

    def get_result(self, job_id: str, repository: str) -> RepositoryResult | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT data FROM results WHERE job_id=? AND repository=?", (job_id, repository)
            ).fetchone()
        return RepositoryResult.from_dict(json.loads(row[0])) if row else None

    def list_results(
        self, job_id: str, status: RepositoryStatus | None = None
    ) -> list[RepositoryResult]:
        query = "SELECT data FROM results WHERE job_id=?"
        args: tuple[Any, ...] = (job_id,)
        if status:
            query += " AND status=?"
            args += (RepositoryStatus(status).value,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY position", args).fetchall()
        return [RepositoryResult.from_dict(json.loads(r[0])) for r in rows]

    def results_with_pr_state(self, pr_state: str) -> list[RepositoryResult]:
        with self._connect() as db:
            rows = db.execute(PR_STATE_QUERY, (pr_state,)).fetchall()
        return newest_first(RepositoryResult.from_dict(json.loads(r[0])) for r in rows)

    def save_result(self, result: RepositoryResult) -> RepositoryResult:
        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT revision, position FROM results WHERE job_id=? AND repository=?",
                (result.job_id, result.repository),
            ).fetchone()
            stored = row[0] if row else 0
            if stored != result.revision:
                raise StaleWriteError(
                    f"{result.repository} of {result.job_id} was written by someone else "
                    f"(revision {stored}, expected {result.revision})"
                )
            if row:
                position = row[1]
            else:
                position = db.execute(
                    "SELECT COUNT(*) FROM results WHERE job_id=?", (result.job_id,)
                ).fetchone()[0]
            result.revision = stored + 1
            result.updated_at = utcnow()
            db.execute(
                f"INSERT OR REPLACE INTO results ({RESULT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    result.job_id,
                    result.repository,
                    position,
                    result.status.value,
                    result.revision,
                    result.expires_at.timestamp(),
                    json.dumps(result.to_dict()),
                    result.pr_state,
                ),
            )
        return result

    # campaigns

    def put_fleet(self, entries: Iterable[FleetEntry]) -> None:
        rows = [
            (
                e.campaign,
                e.repository,
                FleetStatus(e.status).value,
                e.error_class.value if e.error_class else None,
                int(e.member),
                e.pr_state,
                e.total_usd,
                json.dumps(e.to_dict()),
            )
            for e in entries
        ]
        with self._connect(write=True) as db:
            db.executemany("INSERT OR REPLACE INTO fleet VALUES (?,?,?,?,?,?,?,?)", rows)

    def get_fleet(self, campaign: str, repository: str) -> FleetEntry | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT data FROM fleet WHERE campaign=? AND repository=?", (campaign, repository)
            ).fetchone()
        return FleetEntry.from_dict(json.loads(row[0])) if row else None

    def fleet_page(
        self,
        campaign: str,
        status: FleetStatus | None = None,
        error_class: ErrorClass | None = None,
        after: str | None = None,
        limit: int = 50,
        members_only: bool = False,
    ) -> list[FleetEntry]:
        query = "SELECT data FROM fleet WHERE campaign=?"
        args: list[Any] = [campaign]
        if status:
            query += " AND status=?"
            args.append(FleetStatus(status).value)
        if error_class:
            query += " AND error_class=?"
            args.append(ErrorClass(error_class).value)
        if members_only:
            query += " AND member=1"
        if after is not None:
            query += " AND repository>?"
            args.append(after)
        query += " ORDER BY repository LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [FleetEntry.from_dict(json.loads(r[0])) for r in rows]

    def fleet_counts(self, campaign: str) -> FleetCounts:
        counts = FleetCounts()
        with self._connect() as db:
            for member, status, error, pr_state, number, usd in db.execute(
                "SELECT member, status, error_class, pr_state, COUNT(*), SUM(usd) FROM fleet "
                "WHERE campaign=? GROUP BY member, status, error_class, pr_state",
                (campaign,),
            ):
                counts.usd = round(counts.usd + (usd or 0.0), 6)
                if not member:
                    counts.left += number
                    continue
                counts.members += number
                counts.by_status[status] = counts.by_status.get(status, 0) + number
                if error:
                    counts.by_error[error] = counts.by_error.get(error, 0) + number
                counts.prs_open += number if pr_state == "open" else 0
                counts.prs_merged += number if pr_state == "merged" else 0
        return counts

    def get_campaign_state(self, campaign: str) -> tuple[dict[str, Any], int]:
        with self._connect() as db:
            row = db.execute(
                "SELECT data, revision FROM campaign_state WHERE campaign=?", (campaign,)
            ).fetchone()
        return (json.loads(row[0]), row[1]) if row else ({}, 0)

    def put_campaign_state(self, campaign: str, state: dict[str, Any], revision: int) -> int:
        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT revision FROM campaign_state WHERE campaign=?", (campaign,)
            ).fetchone()
            stored = row[0] if row else 0
            if stored != revision:
                raise StaleWriteError(
                    f"campaign {campaign}'s state was written by someone else "
                    f"(revision {stored}, expected {revision})"
                )
            db.execute(
                "INSERT OR REPLACE INTO campaign_state VALUES (?,?,?)",
                (campaign, revision + 1, json.dumps(state)),
            )
        return revision + 1

    # files

    def _dir(self, job_id: str, repository: str) -> Path:
        return self.home / "jobs" / quote(job_id, safe="") / quote(repository, safe="")

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    def put_patch(self, job_id: str, repository: str, patch: bytes) -> None:
        self._write(self._dir(job_id, repository) / "patch.diff", patch)

    def get_patch(self, job_id: str, repository: str) -> bytes | None:
        path = self._dir(job_id, repository) / "patch.diff"
        return path.read_bytes() if path.exists() else None

    def put_thread(self, job_id: str, repository: str, thread: dict[str, Any]) -> None:
        self._write(self._dir(job_id, repository) / "thread.json", json.dumps(thread).encode())

    def get_thread(self, job_id: str, repository: str) -> dict[str, Any] | None:
        path = self._dir(job_id, repository) / "thread.json"
        return json.loads(path.read_text()) if path.exists() else None

    def purge_expired(self, now: datetime | None = None) -> int:
        cutoff = (now or utcnow()).timestamp()
        with self._connect(write=True) as db:
            expired = db.execute("SELECT job_id FROM jobs WHERE expires_at<?", (cutoff,))
            jobs = [r[0] for r in expired]
            results = db.execute(
                "SELECT job_id, repository FROM results WHERE expires_at<?", (cutoff,)
            ).fetchall()
            db.execute("DELETE FROM jobs WHERE expires_at<?", (cutoff,))
            db.execute("DELETE FROM results WHERE expires_at<?", (cutoff,))
            for job_id in jobs:
                db.execute("DELETE FROM results WHERE job_id=?", (job_id,))
        for job_id, repository in results:
            shutil.rmtree(self._dir(job_id, repository), ignore_errors=True)
        for job_id in jobs:
            shutil.rmtree(self.home / "jobs" / quote(job_id, safe=""), ignore_errors=True)
        return len(jobs)
