"""The store interface: where jobs, results, patches and threads live."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from codybatch.records import Job, JobStatus, RepositoryResult, RepositoryStatus


class StoreError(Exception):
    """A store operation could not be done."""


class StaleWriteError(StoreError):
    """A write was refused because the stored record is newer than the writer's copy."""


class NotFoundError(StoreError):
    """The job or repository result does not exist."""


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
        self, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Job]:
        """Jobs newest first, optionally of one status."""

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
    def save_result(self, result: RepositoryResult) -> RepositoryResult:
        """Write a result if nobody wrote since it was read; raise StaleWriteError otherwise."""

    @abstractmethod
    def put_patch(self, job_id: str, repository: str, patch: bytes) -> None: ...

    @abstractmethod
    def get_patch(self, job_id: str, repository: str) -> bytes | None: ...

    @abstractmethod
    def put_thread(self, job_id: str, repository: str, thread: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_thread(self, job_id: str, repository: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete jobs, results, patches and threads past expires_at; return jobs deleted."""
