"""The job DAG factory: validate -> register -> process (mapped) -> [approval] -> finalize."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from codybatch import orphans
from codybatch.airflow.approval import approval_task, publish_approved, request_approval
from codybatch.airflow.batch import batch_process, terminate_batch_jobs
from codybatch.airflow.names import DAG_PREFIX, JOB_DAG_ID, worker_command
from codybatch.airflow.params import job_params, spec_input
from codybatch.airflow.runend import on_run_end
from codybatch.records import FINISHED_JOB_STATUSES, JobStatus, job_id_for_run
from codybatch.settings import Settings
from codybatch.worker import EXIT_RECORDED_FAILURE

log = logging.getLogger(__name__)

WARNINGS_KEY = "warnings"  # validate's XCom for register: what the job should carry
DOC = """
### Cody Batch job
Applies one change (a Claude prompt and/or shell steps) to up to five repositories.
`validate` checks the input, `register` records the job, `process` runs one worker per
repository, `finalize` sums up. Results: the **Cody Batch** page and the **Results** tab.
"""


class WorkerCrashed(RuntimeError):
    """The worker died without recording a result (killed, out of memory): worth a retry."""


class WorkerRefused(RuntimeError):
    """The worker could not start at all (bad arguments, no Python): a retry repeats it."""


# A crashed worker is retried within seconds (3, 6, 12 s ... at most 30 s), not Airflow's
# default 5 minutes; what a retry cannot fix fails at once.
PROCESS_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=3),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(seconds=30),
    "retry_policy": ExceptionRetryPolicy(
        rules=[
            RetryRule(exception=WorkerCrashed, action=RetryAction.RETRY),
            RetryRule(
                exception=[WorkerRefused, OSError],
                action=RetryAction.FAIL,
                reason="the worker cannot start here: a retry would fail the same way",
            ),
        ]
    ),
}
# validate and finalize fail with AirflowFailException on bad input (never retried); a task
# process that could not start or reach the api-server (a busy machine) is retried quickly.
INFRA_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=3)}
# The `codybatch worker` exit status of a command-line usage error (argparse).
EXIT_USAGE = 2


def check_conf(
    params: dict[str, Any],
    conf: dict[str, Any],
    dag_id: str,
    settings: Settings,
    run_id: str | None = None,
) -> tuple[Any, list[str]]:
    """The job of a run, parsed by the job model and checked before work: (spec, notes).

    Raises SpecError with every field error; the validate task and the tests call this. Only a
    campaign's own DAG, or a run its launcher recorded, carries a campaign."""
    from codybatch.checks import checked
    from codybatch.spec import JobSpec

    data = spec_input(params, conf)
    campaign = None
    if dag_id.startswith(DAG_PREFIX):
        campaign = dag_id.removeprefix(DAG_PREFIX)
    elif "campaign" in data and run_id and _launched_by_campaign(data, run_id, settings):
        campaign = data.pop("campaign")
    spec = JobSpec.parse(data, settings, user_input=True)
    if campaign is not None:
        spec = spec.model_copy(update={"campaign": campaign})
    return spec, checked(spec, settings)


def record_refused(
    conf: dict[str, Any], errors: Any, dag_id: str, run_id: str, settings: Settings
) -> None:
    """A run refused by validate is still a job: FAILED, with its field errors, so the jobs
    list, its Results tab and `codybatch jobs` show why."""
    from codybatch.airflow.aws import open_store
    from codybatch.jobs import record_refused_job

    store = open_store(settings)
    record_refused_job(store, conf, errors, job_id_for_run(dag_id, run_id), dag_id, run_id)


@task(**INFRA_RETRIES)
def validate() -> dict[str, Any]:
    """Check the whole input before any work; the run fails here with every field error."""
    from codybatch.spec import SpecError

    context = get_current_context()
    conf = dict(context["dag_run"].conf or {})
    dag_id, run_id = context["dag"].dag_id, context["dag_run"].run_id
    settings = Settings.from_env()
    try:
        spec, notes = check_conf(dict(context["params"]), conf, dag_id, settings, run_id)
    except SpecError as exc:
        for error in exc.errors:
            log.error("invalid job: %s", error)
        record_refused(conf, exc.errors, dag_id, run_id, settings)
        raise AirflowFailException(
            f"the job is invalid ({len(exc.errors)} field errors, logged above); it is "
            "recorded as a FAILED job with them"
        ) from None
    for note in notes:
        log.warning("%s", note)
    context["ti"].xcom_push(key=WARNINGS_KEY, value=notes)
    return spec.to_dict()


def _launched_by_campaign(data: dict[str, Any], run_id: str, settings: Settings) -> bool:
    """A campaign's launcher recorded this very run for these repositories in the store."""
    from codybatch.airflow.aws import open_store
    from codybatch.fleet import launched_by_campaign

    campaign, repositories = data.get("campaign"), data.get("repositories")
    if not isinstance(campaign, str) or not isinstance(repositories, list):
        return False
    try:
        return launched_by_campaign(open_store(settings), campaign, run_id, repositories)
    except ValueError:  # a malformed repository: the spec's own errors say which
        return False


@task(retries=2)
def register(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Write the job and its PENDING results; the id derives from the run, so retries agree."""
    from codybatch.airflow.aws import open_store
    from codybatch.jobs import register_job
    from codybatch.spec import JobSpec

    context = get_current_context()
    dag_id, run_id = context["dag"].dag_id, context["dag_run"].run_id
    job_id = job_id_for_run(dag_id, run_id)
    warnings = context["ti"].xcom_pull(task_ids="validate", key=WARNINGS_KEY) or []
    settings = Settings.from_env()
    job = register_job(
        JobSpec.parse(spec, settings),
        open_store(settings),
        job_id=job_id,
        dag_id=dag_id,
        run_id=run_id,
        warnings=warnings,
    )
    log.info("job %s registered: %d repositories", job.job_id, len(job.repositories))
    return [{"job_id": job.job_id, "repository": r} for r in job.repositories]


def _process_local(job_id: str, repository: str) -> str:
    """Run `codybatch worker` for one repository as a subprocess, streaming its log."""
    command = [sys.executable, "-m", "codybatch", *worker_command(job_id, repository)[1:]]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        preexec_fn=orphans.stop_with_parent,  # a killed task stops its worker (it cleans up)
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        log.info("%s", line.rstrip())
    code = proc.wait()
    if code < 0:
        # Killed (SIGKILL, out of memory): its steps and checkout go now, not at the next start.
        orphans.remove_dead()
    if code == EXIT_RECORDED_FAILURE:
        # The worker recorded why; running it again would repeat the same failure.
        raise AirflowFailException(f"{repository} failed; the job's results say why")
    if code == EXIT_USAGE:
        raise WorkerRefused(f"the worker for {repository} refused its arguments (exit 2)")
    if code != 0:
        raise WorkerCrashed(f"the worker for {repository} crashed (exit {code}); retrying")
    return repository


@task(trigger_rule="all_done", **INFRA_RETRIES)
def finalize(items: list[dict[str, str]] | None = None) -> str:
    """Sum the results into the job status; the run fails if any repository failed."""
    from codybatch.airflow.aws import open_store
    from codybatch.jobs import finalize_job

    context = get_current_context()
    job_id = job_id_for_run(context["dag"].dag_id, context["dag_run"].run_id)
    settings = Settings.from_env()
    store = open_store(settings)
    if not items:
        # The plugin may have registered the job before validate or register failed; a job
        # validate refused is already FAILED with its errors, which stand.
        job = store.get_job(job_id)
        if job is not None and job.status not in FINISHED_JOB_STATUSES:
            finalize_job(
                store,
                job_id,
                "the run failed before this repository was processed (validate or register "
                "failed: its task log says why)",
            )
        raise AirflowFailException("no job was registered (validate or register failed)")
    if settings.runner == "batch":
        # Batch jobs a failed or killed deferred task left running.
        terminate_batch_jobs(job_id, settings)
    job = finalize_job(store, job_id)
    log.info("job %s: %s", job_id, job.status)
    if job.spec.get("campaign"):
        from codybatch.fleet import record_job

        record_job(store, job, store.list_results(job_id))  # the campaign's fleet view
    if job.status in (JobStatus.FAILED, JobStatus.PARTIAL):
        raise AirflowFailException(f"job {job_id} {job.status.value}: {job.error}")
    return job.status.value


def build_job_dag(
    dag_id: str = JOB_DAG_ID,
    schedule: Any = None,
    start_date: datetime | None = None,
    defaults: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    description: str = "Apply one AI-driven change to up to five repositories",
    is_paused_upon_creation: bool | None = None,
    max_active_runs: int = 16,
) -> DAG:
    """A job DAG: the on-demand `codybatch_job`, or a campaign's scheduled copy."""
    settings = Settings.from_env()
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=start_date,
        catchup=False,
        params=job_params(settings, defaults),
        tags=tags or ["codybatch"],
        doc_md=DOC,
        max_active_runs=max_active_runs,
        is_paused_upon_creation=is_paused_upon_creation,
        render_template_as_native_obj=False,
        on_success_callback=on_run_end,
        on_failure_callback=on_run_end,
    ) as dag:
        spec = validate()
        items = register(spec)
        if settings.runner == "batch":
            processed = batch_process(items, settings)
        else:
            processed = task(
                _process_local,
                task_id="process",
                pool=settings.pool,
                map_index_template="{{ task.op_kwargs['repository'] }}",
                **PROCESS_RETRIES,
            ).expand_kwargs(items)
        requests = request_approval(items)
        answers = approval_task(requests, settings)
        published = publish_approved(answers.output, items)
        done = finalize(items)
        processed >> requests
        [processed, published] >> done
    return dag
