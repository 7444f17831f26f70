"""The campaign DAG: resolve the fleet -> plan jobs of five -> launch them, paced -> sum up.

Pacing lives in the mapped `launch` task, one instance per job, run one at a time
(`max_active_tis_per_dagrun=1`: in Airflow 3.3 a deferred instance still holds that slot,
so launches go in order and never race). Each instance asks `fleet.claim_launch` whether
its job may start now (rate, windows, max_concurrent_jobs, budget, all from the store);
if not, it defers on a DateTimeTrigger until it may (no worker slot held while it waits),
then triggers an ordinary codybatch_job run with a run id fixed by (campaign run, batch), so
re-running the campaign run finds the run it made instead of starting a second one. The
state it decides on is in the store, not in the task, so a restarted scheduler, a retried
task or a cleared run carry on where the last one stopped.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from codybatch import fleet
from codybatch.airflow.campaigns import (
    Campaign,
    CampaignError,
    campaigns_dir,
    load_campaign,
    resolve_targets,
)
from codybatch.fleet_records import IN_FLIGHT, FleetEntry
from codybatch.settings import Settings
from codybatch.spec import parse_repository

log = logging.getLogger(__name__)

DOC = """
### Cody Batch campaign
`resolve` finds the fleet (listed and selected repositories, joins and leaves recorded),
`plan` picks the repositories that still need work and groups them in jobs of at most five,
`launch` starts each job as a `codybatch_job` run at the campaign's rollout pace and within
its budget, `summary` sums up. The fleet: the **Cody Batch** campaign page.
"""


def _campaign(file_name: str, settings: Settings) -> Campaign:
    try:
        return load_campaign(campaigns_dir(settings) / file_name, settings)
    except CampaignError as exc:
        raise AirflowFailException(str(exc)) from None


@task
def resolve(file_name: str) -> dict[str, Any]:
    """This run's targets, the fleet synced to them, launched jobs' latest results read."""
    from codybatch.airflow.aws import open_store

    settings = Settings.from_env()
    campaign = _campaign(file_name, settings)
    try:
        targets = resolve_targets(campaign, settings)
    except CampaignError as exc:
        raise AirflowFailException(str(exc)) from None
    store = open_store(settings)
    entries, changes = fleet.sync_members(store, campaign.name, targets)
    for key in changes.joined[:50]:
        log.info("joined: %s", key)
    for key in changes.left[:50]:
        log.info("left: %s", key)
    _settle_lost_runs(store, campaign.name, entries)
    fleet.refresh(store, entries)
    members = sum(e.member for e in entries)
    log.info("campaign %s: %d repositories (%s)", campaign.name, members, changes)
    return {"members": members, "joined": len(changes.joined), "left": len(changes.left)}


def _settle_lost_runs(store: Any, campaign: str, entries: list[FleetEntry]) -> None:
    """Launched runs that ended without a job result (refused, deleted) free their slots."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    runs = {e.run_id for e in entries if e.status in IN_FLIGHT and e.run_id}
    for run_id in sorted(runs):
        if store.get_job(fleet.job_id_for_run(fleet.JOB_DAG_ID, run_id)) is not None:
            continue
        try:
            state = RuntimeTaskInstance.get_dagrun_state(fleet.JOB_DAG_ID, run_id)
        except Exception:  # no such run any more
            state = "missing"
        if state in ("success", "failed", "missing"):
            why = f"its job run {run_id} ended ({state}) without recording a result"
            fleet.settle_lost_run(store, campaign, entries, run_id, why)


@task
def plan(file_name: str, resolved: dict[str, Any]) -> list[dict[str, Any]]:
    """Jobs of at most five repositories that still need work (skipped ones are not cloned)."""
    from codybatch.airflow.aws import open_store

    settings = Settings.from_env()
    campaign = _campaign(file_name, settings)
    store = open_store(settings)
    entries = store.fleet(campaign.name)
    revision = fleet.spec_revision(campaign.spec)
    bases = base_revisions(campaign, [e for e in entries if _may_launch(e)], settings)
    planned = fleet.plan(entries, revision, bases, campaign.batch_size)
    for reason, count in sorted(planned.skipped.items()):
        log.info("not launched, %s: %d", reason, count)
    run_id = get_current_context()["run_id"]
    jobs = []
    for batch in planned.batches:
        label = batch[0] + (f" +{len(batch) - 1}" if len(batch) > 1 else "")
        jobs.append(
            {
                "run_id": fleet.launch_run_id(campaign.name, run_id, revision, batch),
                "repositories": batch,
                "revision": revision,
                "bases": {key: bases.get(key) for key in batch},
                "label": label,
            }
        )
    log.info("%d jobs to launch for %d repositories", len(jobs), sum(map(len, planned.batches)))
    return jobs


def _may_launch(entry: FleetEntry) -> bool:
    return entry.member and entry.status not in IN_FLIGHT and not entry.done_reason


def base_revisions(
    campaign: Campaign, entries: list[FleetEntry], settings: Settings
) -> dict[str, str | None]:
    """The base branch's commit of each repository, asked without cloning."""
    branch = campaign.spec.base_branch
    out: dict[str, str | None] = {}
    remote = []
    for entry in entries:
        repo = parse_repository(entry.repository)
        if repo.is_local:
            out[entry.repository] = fleet.local_revision(repo.path, branch)
        else:
            remote.append(repo)
    if remote:
        from codybatch.github import client

        gh = client(settings).withLazy(True)  # one request a repository: its commit
        for repo in remote:
            try:
                commit = gh.get_repo(repo.full_name).get_commit(branch or "HEAD")
                out[repo.key] = commit.raw_data["sha"]
            except Exception as exc:  # the job finds out and says why; never skip on a guess
                log.info("no base revision for %s: %s", repo.key, exc)
                out[repo.key] = None
    return out


class LaunchJob(TriggerDagRunOperator):
    """Start one job of a campaign run as a codybatch_job run once the rollout allows it."""

    def __init__(self, *, file_name: str, job: dict[str, Any], **kwargs: Any):
        super().__init__(
            trigger_dag_id=fleet.JOB_DAG_ID,
            skip_when_already_exists=True,  # the same job of the same campaign run: done
            wait_for_completion=False,
            **kwargs,
        )
        self.file_name = file_name
        self.job = job

    def execute(self, context: Any) -> Any:
        from codybatch.airflow.aws import open_store

        settings = Settings.from_env()
        campaign = _campaign(self.file_name, settings)
        store = open_store(settings)
        job = self.job
        claim = fleet.claim_launch(
            store,
            campaign.name,
            context["run_id"],
            job["run_id"],
            job["repositories"],
            job["revision"],
            job["bases"],
            campaign.rollout,
            campaign.spec.max_usd,
        )
        decision = claim.decision
        if decision.stop:
            raise AirflowSkipException(f"not launched: {decision.reason}")
        if not decision.go:
            assert decision.wait_until is not None
            log.info("waiting until %s: %s", decision.wait_until.isoformat(), decision.reason)
            # Never a busy loop: at least a second between looks.
            moment = max(decision.wait_until, _now() + timedelta(seconds=1))
            self.defer(trigger=DateTimeTrigger(moment=moment), method_name="resume")
        if claim.already:
            log.info("%s was launched before: triggering it again is a no-op", job["run_id"])
        self.trigger_run_id = job["run_id"]
        self.conf = campaign.job_spec(job["repositories"])
        log.info("launching %s: %s", job["run_id"], ", ".join(job["repositories"]))
        return super().execute(context)

    def resume(self, context: Any, event: Any = None) -> Any:
        return self.execute(context)


def _now() -> Any:
    from codybatch.records import utcnow

    return utcnow()


@task(trigger_rule="all_done")
def summary(file_name: str) -> dict[str, Any]:
    """The fleet's roll-up after this run's launches; says so when a budget stopped them."""
    from codybatch.airflow.aws import open_store

    settings = Settings.from_env()
    campaign = _campaign(file_name, settings)
    store = open_store(settings)
    counts = store.fleet_counts(campaign.name)
    log.info("campaign %s: %s", campaign.name, counts.to_dict())
    run_id = get_current_context()["run_id"]
    point = fleet.snapshot(store, campaign.name, run_id)
    log.info("burndown: %s", point)
    stopped = fleet.stopped_reason(store, campaign.name, run_id)
    if stopped:
        log.warning("launching stopped: %s", stopped)
    return {**counts.to_dict(), "stopped": stopped}


def campaign_dag(file_name: str) -> DAG | None:
    """The DAG of one campaign file (None when disabled); raises CampaignError when invalid."""
    settings = Settings.from_env()
    campaign = load_campaign(campaigns_dir(settings) / file_name, settings, resolve_selection=True)
    if not campaign.enabled:
        return None
    return build_campaign_dag(campaign, file_name)


def build_campaign_dag(campaign: Campaign, file_name: str) -> DAG:
    """The DAG of one campaign: scheduled, one run at a time."""
    with DAG(
        dag_id=campaign.dag_id,
        description=f"Campaign {campaign.spec.name}: {campaign.path.name}",
        schedule=campaign.schedule,
        start_date=campaign.start_date,
        catchup=False,
        max_active_runs=1,  # runs of a campaign share its fleet and pace: never two at once
        # Nobody's campaign runs by itself on `make up`: a person unpauses it (or the file
        # says `paused: false`); the job DAG stays unpaused (the Makefile's default).
        is_paused_upon_creation=campaign.paused,
        tags=["codybatch", "campaign"],
        doc_md=DOC,
    ) as dag:
        resolved = resolve(file_name)
        jobs = plan(file_name, resolved)
        launched = LaunchJob.partial(
            task_id="launch",
            file_name=file_name,
            max_active_tis_per_dagrun=1,
            map_index_template="{{ task.job['label'] }}",
            retries=2,
            retry_delay=timedelta(seconds=30),
        ).expand(job=jobs)
        launched >> summary(file_name)
    return dag
