"""What the pages and the API do, in one place: read jobs, create, cancel, publish."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi.responses import Response

from codybatch.airflow.aws import open_store
from codybatch.airflow.dag import JOB_DAG_ID
from codybatch.airflow.ui.runs import RunError, fail_run, new_run_id, trigger_run
from codybatch.records import (
    FINISHED_JOB_STATUSES,
    Job,
    JobStatus,
    RepositoryResult,
    RepositoryStatus,
    job_id_for_run,
)
from codybatch.redact import redact, redact_text
from codybatch.reports import result_counts
from codybatch.settings import Settings
from codybatch.spec import JobSpec, parse_repository, repository_allowed
from codybatch.store import JobCursor, Store
from codybatch.text import scrub

log = logging.getLogger(__name__)

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
MAX_BATCH = 1000  # jobs read at once while looking for visible ones
RECENT_JOBS = 50  # recent jobs whose local repositories the New job form offers


class ActionError(Exception):
    """A request that cannot be done; `status` is the HTTP answer, `errors` field errors."""

    def __init__(self, message: str, status: int = 400, errors: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []


def settings() -> Settings:
    """Read once per request by its route (the plugin's entry point) and passed down."""
    return Settings.from_env()


# An AWS store holds a session made from the Airflow connection's credentials: opened again
# every few minutes, so a rotated or edited connection reaches the UI without a restart.
STORE_REOPEN_SECONDS = 300


@lru_cache(maxsize=8)
def _store_for(config: Settings, period: int) -> Store:
    return open_store(config)


def store(config: Settings) -> Store:
    """The store the plugin reads (the same one the workers write)."""
    return _store_for(config, int(time.monotonic() // STORE_REOPEN_SECONDS))


@dataclass
class JobPage:
    jobs: list[Job]
    counts: dict[str, dict[str, int]]
    limit: int
    offset: int
    has_more: bool
    status: JobStatus | None = None
    results: dict[str, list[RepositoryResult]] = field(default_factory=dict)
    cursor: str | None = None  # the page started after this job (keyset pagination)

    @property
    def next_cursor(self) -> str | None:
        """Where the next page starts: pass it back as `cursor` (no offset re-reading)."""
        return str(JobCursor.of(self.jobs[-1])) if self.has_more and self.jobs else None


def parse_status(raw: str | None) -> JobStatus | None:
    """A job status from a query string; '' or 'ALL' means no filter."""
    if not raw or raw.upper() == "ALL":
        return None
    try:
        return JobStatus(raw.upper())
    except ValueError:
        choices = ", ".join(s.value for s in JobStatus)
        raise ActionError(
            f"status {raw!r} is not known: use one of {choices}",
            400,
            [{"field": "status", "message": f"must be one of {choices}"}],
        ) from None


JobFilter = Callable[[list[Job]], list[Job]]


def parse_cursor(raw: str | None) -> JobCursor | None:
    """A jobs page cursor from a query string (a page's next_cursor); a bad one is a 400."""
    if not raw:
        return None
    try:
        return JobCursor.parse(raw)
    except ValueError as exc:
        raise ActionError(str(exc), 400, [{"field": "cursor", "message": str(exc)}]) from None


def visible_jobs(
    the_store: Store,
    status: JobStatus | None,
    visible: JobFilter,
    count: int,
    skip: int = 0,
    before: JobCursor | None = None,
) -> list[Job]:
    """Up to `count` jobs, newest first, that `visible` keeps, after the first `skip` of them.

    Offsets count visible jobs only, so pages stay full whatever a user may not see. Each
    batch goes on from where the last stopped (a keyset cursor: no job read twice, none
    skipped when one is created meanwhile) and doubles, up to MAX_BATCH.
    """
    out: list[Job] = []
    seen = 0
    batch = skip + count
    while len(out) < count:
        jobs = the_store.list_jobs(status=status, limit=batch, before=before)
        for job in visible(jobs):
            seen += 1
            if seen > skip:
                out.append(job)
        if len(jobs) < batch:
            break
        before = JobCursor.of(jobs[-1])
        batch = min(batch * 2, MAX_BATCH)
    return out[:count]


def list_jobs(
    the_store: Store,
    status: JobStatus | None,
    limit: int = PAGE_SIZE,
    offset: int = 0,
    *,
    visible: JobFilter,
    cursor: str | None = None,
) -> JobPage:
    """One page of the jobs `visible` keeps, newest first, with the counts of their results:
    `offset` jobs in, or after `cursor` (a page's next_cursor, which reads no earlier page)."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    offset = max(0, offset)
    before = parse_cursor(cursor)
    jobs = visible_jobs(the_store, status, visible, limit + 1, offset, before)
    has_more = len(jobs) > limit
    jobs = jobs[:limit]
    results = {j.job_id: the_store.list_results(j.job_id) for j in jobs}
    counts = {job_id: result_counts(found) for job_id, found in results.items()}
    return JobPage(jobs, counts, limit, offset, has_more, status, results, cursor or None)


def get_job(the_store: Store, job_id: str) -> Job:
    job = the_store.get_job(job_id)
    if job is None:
        raise ActionError(f"job {job_id} not found", 404)
    return job


def resolve_repository(job: Job, raw: str) -> str:
    """The stored key of one of the job's repositories, from a key, owner/name or path."""
    raw = raw.strip()
    if raw in job.repositories:
        return raw
    candidates = [raw, "/" + raw.lstrip("/")]
    for candidate in candidates:
        try:
            key = parse_repository(candidate).key
        except ValueError:
            continue
        if key in job.repositories:
            return key
    lowered = {r.lower(): r for r in job.repositories}
    if raw.lower() in lowered:
        return lowered[raw.lower()]
    raise ActionError(f"{raw} is not a repository of job {job.job_id}", 404)


def is_repository_of(job: Job, raw: str) -> bool:
    try:
        resolve_repository(job, raw)
    except ActionError:
        return False
    return True


def get_result(the_store: Store, job: Job, raw: str) -> RepositoryResult:
    key = resolve_repository(job, raw)
    result = the_store.get_result(job.job_id, key)
    if result is None:
        raise ActionError(f"{key} of job {job.job_id} has no result yet", 404)
    return result


def safe(value: Any, config: Settings) -> Any:
    """A JSON-like value with every configured secret masked (defence in depth), and any
    text a stored row may hold made encodable (a lone surrogate must not fail a page)."""
    return redact(scrub(value), config.secrets)


def safe_text(text: str, config: Settings) -> str:
    return redact_text(text, config.secrets)


def job_dict(job: Job, results: list[RepositoryResult] | None, config: Settings) -> dict:
    data = job.to_dict()
    if results is not None:
        data["counts"] = result_counts(results)
        data["results"] = [result_dict(r) for r in results]
    data["finished"] = job.status in FINISHED_JOB_STATUSES
    return safe(data, config)


def result_dict(result: RepositoryResult) -> dict:
    data = result.to_dict()
    data["finished"] = result.finished
    return data


def safe_filename(text: str) -> str:
    """Letters, digits, dot, dash and underscore only: safe inside a Content-Disposition."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-80:] or "codybatch"


def patch_filename(job_id: str, repository: str) -> str:
    """A safe file name for a downloaded patch."""
    return f"{safe_filename(job_id)}-{safe_filename(repository)}.patch"


def patch_response(
    the_store: Store,
    job: Job,
    repository: str,
    config: Settings,
    disposition: Literal["inline", "attachment"],
) -> Response:
    """The patch of one of the job's repositories as text/x-diff, secrets masked; 404 if none."""
    key = resolve_repository(job, repository)
    patch = the_store.get_patch(job.job_id, key)
    if patch is None:
        raise ActionError(f"{key} of job {job.job_id} has no patch (yet)", 404)
    text = safe_text(patch.decode("utf-8", "surrogateescape"), config)
    return Response(
        text.encode("utf-8", "surrogateescape"),
        media_type="text/x-diff",
        headers={
            "Content-Disposition": f'{disposition}; filename="{patch_filename(job.job_id, key)}"'
        },
    )


@dataclass
class Created:
    job: Job
    run_id: str
    dag_paused: bool
    warnings: list[str] = field(default_factory=list)


def create_job(data: Any, user_name: str, config: Settings, the_store: Store) -> Created:
    """Validate and check a job, trigger its DAG run and register it; SpecError on bad input.

    The same parse and checks as the DAG's validate task, so a registered job always runs."""
    from codybatch.checks import checked
    from codybatch.jobs import register_job

    spec = JobSpec.parse(data, config, user_input=True)
    notes = checked(spec, config)
    run_id = new_run_id()
    conf = spec.conf()
    try:
        paused = trigger_run(JOB_DAG_ID, run_id, conf, user_name)
    except RunError as exc:
        raise ActionError(str(exc), exc.status) from None
    # The DAG's register task writes the same record (same id): whichever comes first wins.
    job = register_job(
        spec,
        the_store,
        job_id=job_id_for_run(JOB_DAG_ID, run_id),
        dag_id=JOB_DAG_ID,
        run_id=run_id,
        warnings=notes,
    )
    warnings = list(notes)
    if paused:
        warnings.append(f"the {JOB_DAG_ID} DAG is paused: the run waits until someone unpauses it")
    return Created(job, run_id, paused, warnings)


def cancel(job_id: str, the_store: Store) -> Job:
    """Fail the job's DAG run (its tasks stop) and mark the job and open repositories CANCELLED."""
    from codybatch.jobs import cancel_job

    job = get_job(the_store, job_id)
    if job.status in FINISHED_JOB_STATUSES:
        raise ActionError(
            f"job {job_id} already finished ({job.status.value}): there is nothing to cancel",
            409,
        )
    if job.dag_id and job.run_id:
        try:
            fail_run(job.dag_id, job.run_id)
        except RunError as exc:
            raise ActionError(str(exc), exc.status) from None
    return cancel_job(the_store, job_id)


def can_publish(result: RepositoryResult) -> bool:
    """A finished result with a patch but no pull request, on a GitHub repository."""
    if result.status != RepositoryStatus.COMPLETED or not result.has_patch or result.pr_url:
        return False
    try:
        return not parse_repository(result.repository).is_local
    except ValueError:
        return False


def publish(job: Job, raw: str, config: Settings, the_store: Store) -> list[RepositoryResult]:
    """Open the pull request of a patch-only result (codybatch.publish)."""
    result = get_result(the_store, job, raw)
    if not can_publish(result):
        raise ActionError(
            f"{result.repository} has nothing to publish: it needs a completed result with a "
            "patch, on a GitHub repository, and no pull request yet",
            409,
        )
    from codybatch.publish import PublishError, publish_stored

    try:
        return publish_stored(job.job_id, result.repository, config, the_store)
    except PublishError as exc:
        raise ActionError(safe_text(str(exc), config), 409) from None
    except Exception as exc:
        log.exception("publishing %s of %s failed", result.repository, job.job_id)
        raise ActionError(
            f"could not open the pull request: {safe_text(str(exc), config)}", 502
        ) from None


def repositories(config: Settings, the_store: Store, *, visible: JobFilter) -> dict[str, Any]:
    """Repositories a new job may use: GitHub's (with a token) or the allowlist's literals,
    plus local repositories of recent jobs (that `visible` keeps) that the allowlist allows."""
    found: set[str] = set()
    source = "allowlist"
    error = None
    if config.github_token:
        try:
            from codybatch.github import list_repositories

            found.update(list_repositories(config))
            source = "github"
        except Exception as exc:
            error = safe_text(f"could not list GitHub repositories: {exc}", config)
            log.warning("%s", error)
    for pattern in config.allowed_repositories:
        if any(ch in pattern for ch in "*?["):
            continue
        try:
            found.add(parse_repository(pattern).key)
        except ValueError:
            continue
    for job in visible_jobs(the_store, None, visible, RECENT_JOBS):
        for key in job.repositories:
            try:
                repo = parse_repository(key)
            except ValueError:
                continue
            if repo.is_local and repository_allowed(repo, config) and Path(repo.path).exists():
                found.add(repo.key)
    out: dict[str, Any] = {"repositories": sorted(found), "source": source}
    if error:
        out["error"] = error
    return out
