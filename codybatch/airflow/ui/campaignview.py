"""Campaigns as the plugin lists them: their files, their DAGs, their runs in the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from codybatch import fleet
from codybatch.airflow.campaigns import (
    DAG_PREFIX,
    campaign_files,
    campaign_name,
    campaigns_dir,
    load_campaign,
)
from codybatch.airflow.dag import JOB_DAG_ID
from codybatch.airflow.ui.actions import ActionError, safe, safe_text
from codybatch.airflow.ui.auth import JobReader
from codybatch.fleet_records import ErrorClass, FleetCounts, FleetEntry, FleetStatus
from codybatch.records import Job
from codybatch.reports import burndown, campaign_jobs
from codybatch.settings import Settings
from codybatch.store import Store

log = logging.getLogger(__name__)

# Runs of a campaign from before fleets read for its burndown, newest first (the store keeps
# 30 days of jobs anyway).
RUNS_LIMIT = 1000


@dataclass
class CampaignInfo:
    """One campaign: from its file when there is one, and from its runs in the store."""

    name: str
    file: str | None = None
    title: str | None = None
    schedule: str | None = None
    start_date: datetime | None = None
    enabled: bool | None = None
    repositories: list[str] = field(default_factory=list)
    create_pull_requests: bool | None = None
    error: str | None = None
    runs: int = 0
    latest: Job | None = None
    paused: bool | None = None
    select: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None

    @property
    def dag_id(self) -> str:
        return DAG_PREFIX + self.name

    def to_dict(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "name": self.name,
            "dag_id": self.dag_id,
            "file": self.file,
            "title": self.title,
            "schedule": self.schedule,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "enabled": self.enabled,
            "paused": self.paused,
            "repositories": self.repositories,
            "create_pull_requests": self.create_pull_requests,
            "select": self.select,
            "rollout": self.rollout,
            "error": self.error,
            "runs": self.runs,
            "latest": None
            if latest is None
            else {
                "job_id": latest.job_id,
                "status": latest.status.value,
                "created_at": latest.created_at.isoformat(),
            },
        }


def _from_file(path: Path, config: Settings) -> CampaignInfo:
    info = CampaignInfo(campaign_name(path), file=path.name)
    try:
        campaign = load_campaign(path, config)
    except Exception as exc:  # an invalid file is listed with its error, never a 500
        info.error = safe_text(str(exc), config)
        return info
    spec = campaign.spec
    info.title = spec.name
    info.schedule = campaign.schedule
    info.start_date = campaign.start_date
    info.enabled = campaign.enabled
    info.repositories = list(campaign.repositories)
    info.create_pull_requests = spec.create_pull_requests
    info.select = campaign.selector.to_dict() if campaign.selector else None
    info.rollout = campaign.rollout.to_dict()
    return info


def _paused(infos: list[CampaignInfo]) -> None:
    from codybatch.airflow.ui.runs import paused_dags

    try:
        paused = paused_dags([i.dag_id for i in infos])
    except Exception:  # the page still helps without Airflow's database
        log.warning("could not read the campaign DAGs' paused state", exc_info=True)
        return
    for info in infos:
        info.paused = paused.get(info.dag_id)


def list_campaigns(config: Settings, store: Store, reader: JobReader) -> list[CampaignInfo]:
    """Every campaign file (invalid ones with their error), then campaigns known only by runs;
    only campaigns, and runs, of DAGs whose runs the reader may read. The store answers by
    its campaign index: a count and the newest job per campaign, never a list of all jobs."""
    by_dag = store.campaigns()
    dags = reader.readable_dags(dag or JOB_DAG_ID for c in by_dag.values() for dag in c)
    runs = {
        name: sum(n for dag, n in counts.items() if (dag or JOB_DAG_ID) in dags)
        for name, counts in by_dag.items()
    }
    infos = {}
    for path in campaign_files(campaigns_dir(config)):
        info = _from_file(path, config)
        infos.setdefault(info.name, info)
    for name in sorted(runs):
        if runs[name]:
            infos.setdefault(name, CampaignInfo(name))
    readable = reader.readable_dags(i.dag_id for i in infos.values())
    out = [i for i in infos.values() if i.dag_id in readable]
    for info in out:
        info.runs = runs.get(info.name, 0)
        info.latest = _newest_readable(store, info.name, reader) if info.runs else None
    _paused(out)
    return out


def _newest_readable(store: Store, name: str, reader: JobReader) -> Job | None:
    """The campaign's newest job the reader may read (most often its newest job)."""
    for job in store.iter_jobs(campaign=name, page=5):
        if reader.jobs([job]):
            return job
    return None


def get_campaign(
    config: Settings, store: Store, name: str, reader: JobReader
) -> tuple[CampaignInfo, list[dict[str, Any]]]:
    """One campaign by name and its burndown points (oldest run first): the whole fleet after
    each campaign run, or per job for campaigns from before fleets; 403 unless the reader may
    read runs of its DAG, 404 when neither a file nor a run has that name."""
    reader.require_dag(DAG_PREFIX + name)
    files = campaign_files(campaigns_dir(config))
    info = next((_from_file(p, config) for p in files if campaign_name(p) == name), None)
    history = fleet.burndown(store, name)
    jobs = [] if history else reader.jobs(campaign_jobs(store, name, limit=RUNS_LIMIT))
    if info is None and not jobs and not history:
        raise ActionError(f"campaign {name} not found: no campaign file and no runs", 404)
    info = info or CampaignInfo(name)
    info.runs = len(history) or len(jobs)
    info.latest = jobs[-1] if jobs else None
    _paused([info])
    points = history or burndown([(j, store.list_results(j.job_id)) for j in jobs])
    return info, safe(points, config)


@dataclass
class FleetPage:
    """One page of a campaign's fleet, its filters, and the whole fleet's roll-up."""

    counts: FleetCounts
    entries: list[FleetEntry]
    status: FleetStatus | None
    error_class: ErrorClass | None
    cursor: str | None
    next_cursor: str | None
    limit: int
    stopped: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.to_dict(),
            "repositories": [fleet_dict(e) for e in self.entries],
            "status": self.status.value if self.status else None,
            "error_class": self.error_class.value if self.error_class else None,
            "cursor": self.cursor,
            "next_cursor": self.next_cursor,
            "limit": self.limit,
            "stopped": self.stopped,
        }


def fleet_dict(entry: FleetEntry) -> dict[str, Any]:
    data = entry.to_dict()
    data["usd_total"] = entry.total_usd
    return data


def parse_fleet_filters(
    status: str | None, error_class: str | None
) -> tuple[FleetStatus | None, ErrorClass | None]:
    """Filters from a query string; '' or ALL mean none; an unknown value is a 400."""
    try:
        wanted = FleetStatus(status.upper()) if status and status.upper() != "ALL" else None
    except ValueError:
        choices = ", ".join(s.value for s in FleetStatus)
        raise ActionError(f"status {status!r} is not known: use one of {choices}", 400) from None
    try:
        error = ErrorClass(error_class.lower()) if error_class and error_class != "all" else None
    except ValueError:
        choices = ", ".join(c.value for c in ErrorClass)
        raise ActionError(
            f"error_class {error_class!r} is not known: use one of {choices}", 400
        ) from None
    return wanted, error


def fleet_page(
    config: Settings,
    store: Store,
    name: str,
    reader: JobReader,
    status: FleetStatus | None = None,
    error_class: ErrorClass | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> FleetPage:
    """A page of the fleet by repository name (keyset pagination), answered by the store's
    index; 403 unless the reader may read runs of the campaign's DAG."""
    reader.require_dag(DAG_PREFIX + name)
    entries = store.fleet_page(
        name, status=status, error_class=error_class, after=cursor, limit=limit + 1
    )
    more = len(entries) > limit
    entries = entries[:limit]
    state, _ = store.get_campaign_state(name)
    stopped = list((state.get("stopped") or {}).values())
    return FleetPage(
        store.fleet_counts(name),
        [FleetEntry.from_dict(safe(e.to_dict(), config)) for e in entries],
        status,
        error_class,
        cursor,
        entries[-1].repository if more and entries else None,
        limit,
        stopped[-1] if stopped else None,
    )


def all_entries(
    store: Store, name: str, status: FleetStatus | None, error_class: ErrorClass | None
) -> list[FleetEntry]:
    """Every entry matching the filters (the CSV export), read page by page."""
    entries: list[FleetEntry] = []
    while page := store.fleet_page(
        name,
        status=status,
        error_class=error_class,
        after=entries[-1].repository if entries else None,
        limit=500,
    ):
        entries.extend(page)
    return entries


def retry(
    store: Store, name: str, repositories: list[str], failed: bool, user_name: str
) -> tuple[list[str], str | None]:
    """Mark repositories to retry and trigger a campaign run now; returns what was marked and
    the triggered run id (None when nothing was marked)."""
    from codybatch.airflow.ui.runs import RunError, new_run_id, trigger_run

    try:
        marked = fleet.request_retry(store, name, repositories, failed=failed)
    except KeyError as exc:
        raise ActionError(str(exc.args[0]), 404) from None
    except ValueError as exc:
        raise ActionError(str(exc), 400) from None
    if not marked:
        return [], None
    run_id = new_run_id()
    try:
        trigger_run(DAG_PREFIX + name, run_id, {}, user_name)
    except RunError as exc:
        raise ActionError(
            f"marked for retry, but the campaign run was not started: {exc}", exc.status
        ) from None
    return marked, run_id
