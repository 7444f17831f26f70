"""What a job page says about a repository while (and after) its worker runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from codybatch.airflow.ui.urls import task_url
from codybatch.records import Job, Phase, RepositoryResult, RepositoryStatus, Usage, utcnow

PHASES = {
    Phase.QUEUED: "queued",
    Phase.CHECKING: "checking",
    Phase.CLONING: "cloning",
    Phase.STEPS: "running steps",
    Phase.CLAUDE: "Claude",
    Phase.VERIFY: "verifying",
    Phase.DIFF: "recording the diff",
    Phase.PUBLISHING: "publishing",
    Phase.DONE: "done",
}
PROCESS_TASK = "process"  # the mapped task of the job DAG (codybatch/airflow/dag.py)


@dataclass(frozen=True)
class ProgressView:
    phase: str  # in words, e.g. "Claude turn 7"
    detail: str | None
    running: bool
    elapsed: str | None
    turn: int
    usage: Usage
    last_tool: str | None
    task_log_url: str | None
    batch_log_url: str | None


def elapsed(start: datetime | None, end: datetime | None = None) -> str | None:
    """`1h 02m`, `3m 05s`, `42s`."""
    if start is None:
        return None
    seconds = max(0, int(((end or utcnow()) - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def task_log_url(job: Job, result: RepositoryResult) -> str | None:
    """The Airflow UI page (logs) of the repository's mapped `process` task."""
    if not (job.dag_id and job.run_id) or result.repository not in job.repositories:
        return None
    index = job.repositories.index(result.repository)
    return task_url(job.dag_id, job.run_id, PROCESS_TASK, index)


def batch_log_url(region: str, result: RepositoryResult) -> str | None:
    """The AWS Batch console page of the worker's job (it links its CloudWatch log stream)."""
    job_id = result.progress.batch_job_id
    if not job_id:
        return None
    return (
        f"https://{region}.console.aws.amazon.com/batch/home?region={region}"
        f"#jobs/detail/{quote(job_id, safe='')}"
    )


def progress_view(result: RepositoryResult, job: Job, region: str) -> ProgressView:
    p = result.progress
    running = result.status == RepositoryStatus.RUNNING
    phase = PHASES.get(p.phase, str(p.phase))
    if running and p.phase == Phase.CLAUDE and p.turn:
        phase = f"Claude turn {p.turn}"
    elif not running:
        phase = result.status.value.lower()
    return ProgressView(
        phase=phase,
        detail=p.detail if running else None,
        running=running,
        elapsed=elapsed(result.started_at, None if running else result.finished_at),
        turn=p.turn,
        usage=p.usage if running else result.usage,
        last_tool=p.last_tool,
        task_log_url=task_log_url(job, result),
        batch_log_url=batch_log_url(region, result),
    )
