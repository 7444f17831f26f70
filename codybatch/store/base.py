"""The store interface: where jobs, results, patches and threads live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from codybatch.fleet_records import ErrorClass, FleetCounts, FleetEntry, FleetStatus
from codybatch.records import Job, JobStatus, RepositoryResult, RepositoryStatus, job_id_for_run


class StoreError(Exception):
    """A store operation could not be done."""


class StaleWriteError(StoreError):
    """A write was refused because the stored record is newer than the writer's copy."""


class NotFoundError(StoreError):
    """The job or repository result does not exist."""


@dataclass(frozen=True)
class JobCursor:
    """Where a newest-first page of jobs stopped: the next page holds the jobs listed after
    this one (older, or as old with a smaller job id). Keyset pagination, not offsets."""

    created_at: datetime
    job_id: str

    @classmethod
    def of(cls, job: Job) -> JobCursor:
        return cls(job.created_at, job.job_id)

    def __str__(self) -> str:
        # "Z", not "+00:00": a "+" pasted unencoded into a query string arrives as a space.
        return f"{self.created_at.isoformat().replace('+00:00', 'Z')}|{self.job_id}"

    @classmethod
    def parse(cls, text: str) -> JobCursor:
        """A cursor from its text (as a page handed it out); ValueError names the field."""
        stamp, sep, job_id = text.partition("|")
        try:
            created_at = datetime.fromisoformat(stamp)
        except ValueError:
            created_at = None
        if not sep or not job_id or created_at is None or created_at.tzinfo is None:
            raise ValueError(f"cursor {text!r} is not one a page gave out: drop it to start over")
        return cls(created_at, job_id)

    def precedes(self, job: Job) -> bool:
        """True when `job` comes after the cursor in newest-first order."""
        return (job.created_at, job.job_id) < (self.created_at, self.job_id)


def campaign_of(job: Job) -> str | None:
    """The campaign a job belongs to (the index key), or None."""
    name = job.spec.get("campaign")
    return name if isinstance(name, str) and name else None


def newest_first(results: Iterable[RepositoryResult]) -> list[RepositoryResult]:
    """Results newest first; ties by job id, then repository (one order for every store)."""
    by_name = sorted(results, key=lambda r: (r.job_id, r.repository))
    return sorted(by_name, key=lambda r: r.created_at, reverse=True)


class Store(ABC):
    """Jobs, repository results, patches and threads.

    Writes of results are conditional on `revision` (optimistic concurrency):
    `save_result` succeeds only when the stored revision equals the caller's, then
    increments it on the caller's object.
    """

    @abstractmethod
    def create_job(self, job: Job) -> Job:
        """Write a job and a PENDING result per repository; if it exists, return the stored one."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def list_jobs(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        before: JobCursor | None = None,
        since: datetime | None = None,
    ) -> list[Job]:
        """Jobs newest first, optionally of one status, after the cursor `before` and created
        at or after `since`; answered by the (status, created) index."""

    @abstractmethod
    def campaign_jobs(
        self, campaign: str, limit: int = 50, before: JobCursor | None = None
    ) -> list[Job]:
        """The jobs of a campaign, newest first, after the cursor; answered by an index."""

    @abstractmethod
    def campaigns(self) -> dict[str, dict[str | None, int]]:
        """Every campaign with stored jobs: how many it has per DAG (None: jobs with no DAG
        run), so a reader counts only the runs it may read."""

    def iter_jobs(
        self, status: JobStatus | None = None, campaign: str | None = None, page: int = 200
    ) -> Iterator[Job]:
        """Every job (of one status, or of one campaign), newest first, page by page."""
        if status is not None and campaign is not None:
            raise ValueError("iter_jobs takes a status or a campaign, not both")
        before = None
        while True:
            if campaign is not None:
                found = self.campaign_jobs(campaign, limit=page, before=before)
            else:
                found = self.list_jobs(status=status, limit=page, before=before)
            yield from found
            if len(found) < page:
                return
            before = JobCursor.of(found[-1])

    def job_for_run(self, dag_id: str, run_id: str) -> Job | None:
        """The job of a DAG run: its id derives from the run, so this is a key lookup."""
        job = self.get_job(job_id_for_run(dag_id, run_id))
        if job is None or (job.dag_id, job.run_id) != (dag_id, run_id):
            return None
        return job

    @abstractmethod
    def update_job(
        self, job_id: str, only_from: Iterable[JobStatus] | None = None, **fields: Any
    ) -> Job:
        """Set fields of a job (status, usage, error, dag_id, run_id) and bump updated_at.

        With `only_from`, the write happens only while the job's status is one of those
        (e.g. a late worker must not turn a CANCELLED job back to RUNNING); the stored job
        is returned either way."""

    @abstractmethod
    def get_result(self, job_id: str, repository: str) -> RepositoryResult | None: ...

    @abstractmethod
    def list_results(
        self, job_id: str, status: RepositoryStatus | None = None
    ) -> list[RepositoryResult]:
        """Results of a job, in the job's repository order."""

    @abstractmethod
    def results_with_pr_state(self, pr_state: str) -> list[RepositoryResult]:
        """Every result whose pull request is in `pr_state` (e.g. open), newest first (see
        `newest_first`); answered by an index on the PR state."""

    @abstractmethod
    def save_result(self, result: RepositoryResult) -> RepositoryResult:
        """Write a result if nobody wrote since it was read; raise StaleWriteError otherwise."""

    def update_result(
        self,
        job_id: str,
        repository: str,
        change: Callable[[RepositoryResult], bool | None],
        attempts: int = 5,
    ) -> RepositoryResult:
        """Compare-and-swap: apply `change` to the stored result and save it, re-reading and
        re-applying when someone wrote meanwhile. `change` returns False to write nothing
        (the stored result is returned as it is)."""
        for _ in range(attempts):
            result = self.get_result(job_id, repository)
            if result is None:
                raise NotFoundError(f"{repository} is not a repository of job {job_id}")
            if change(result) is False:
                return result
            try:
                return self.save_result(result)
            except StaleWriteError:
                continue
        raise StaleWriteError(f"{repository} of {job_id} kept changing: gave up after {attempts}")

    @abstractmethod
    def put_patch(self, job_id: str, repository: str, patch: bytes) -> None: ...

    @abstractmethod
    def get_patch(self, job_id: str, repository: str) -> bytes | None: ...

    @abstractmethod
    def put_thread(self, job_id: str, repository: str, thread: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_thread(self, job_id: str, repository: str) -> dict[str, Any] | None: ...

    def migrate(self) -> int:
        """Bring records written before the current indexes into them; return how many were
        changed. Safe to run again and while others write."""
        return 0

    @abstractmethod
    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete jobs, results, patches and threads past expires_at; return jobs deleted."""

    # campaigns: one fleet entry per (campaign, repository), and one small pacing record

    @abstractmethod
    def put_fleet(self, entries: Iterable[FleetEntry]) -> None:
        """Write fleet entries (insert or replace each)."""

    @abstractmethod
    def get_fleet(self, campaign: str, repository: str) -> FleetEntry | None: ...

    @abstractmethod
    def fleet_page(
        self,
        campaign: str,
        status: FleetStatus | None = None,
        error_class: ErrorClass | None = None,
        after: str | None = None,
        limit: int = 50,
        members_only: bool = False,
    ) -> list[FleetEntry]:
        """Entries of a campaign by repository name, after `after` (keyset pagination),
        optionally of one status or error class, answered by an index."""

    def fleet(self, campaign: str) -> list[FleetEntry]:
        """Every entry of a campaign (members and those that left), page by page."""
        entries: list[FleetEntry] = []
        while True:
            page = self.fleet_page(
                campaign, after=entries[-1].repository if entries else None, limit=500
            )
            entries.extend(page)
            if len(page) < 500:
                return entries

    @abstractmethod
    def fleet_counts(self, campaign: str) -> FleetCounts:
        """The campaign's roll-up: members by status and error class, PRs, cost."""

    @abstractmethod
    def get_campaign_state(self, campaign: str) -> tuple[dict[str, Any], int]:
        """The campaign's pacing record and its revision (0 when none was written)."""

    @abstractmethod
    def put_campaign_state(self, campaign: str, state: dict[str, Any], revision: int) -> int:
        """Write the pacing record if its revision is still `revision`; return the new one.
        Raise StaleWriteError when someone wrote it meanwhile."""
