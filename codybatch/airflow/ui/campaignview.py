"""Campaigns as the plugin lists them: their files, their DAGs, their runs in the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from codybatch.airflow.campaigns import (
    DAG_PREFIX,
    campaign_files,
    campaign_name,
    campaigns_dir,
    load_campaign,
)
from codybatch.airflow.ui.actions import ActionError, safe, safe_text
from codybatch.airflow.ui.auth import JobReader
from codybatch.records import Job
from codybatch.reports import burndown, campaign_jobs
from codybatch.settings import Settings
from codybatch.store import Store

log = logging.getLogger(__name__)

# Jobs scanned for campaign runs, newest first (the store keeps 30 days anyway).
SCAN_LIMIT = 1000


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
    info.repositories = list(spec.repositories)
    info.create_pull_requests = spec.create_pull_requests
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
    only campaigns, and runs, of DAGs whose runs the reader may read."""
    runs: dict[str, list[Job]] = {}
    for job in reader.jobs(store.list_jobs(limit=SCAN_LIMIT)):  # newest first
        name = job.spec.get("campaign")
        if isinstance(name, str) and name:
            runs.setdefault(name, []).append(job)
    infos = {}
    for path in campaign_files(campaigns_dir(config)):
        info = _from_file(path, config)
        infos.setdefault(info.name, info)
    for name in runs:
        infos.setdefault(name, CampaignInfo(name))
    for info in infos.values():
        found = runs.get(info.name, [])
        info.runs = len(found)
        info.latest = found[0] if found else None
    readable = reader.readable_dags(i.dag_id for i in infos.values())
    out = [i for i in infos.values() if i.dag_id in readable]
    _paused(out)
    return out


def get_campaign(
    config: Settings, store: Store, name: str, reader: JobReader
) -> tuple[CampaignInfo, list[dict[str, Any]]]:
    """One campaign by name and its burndown points (oldest run first), of the runs the reader
    may read; 403 unless the reader may read runs of its DAG, 404 when neither a file nor a
    run has that name."""
    reader.require_dag(DAG_PREFIX + name)
    files = campaign_files(campaigns_dir(config))
    info = next((_from_file(p, config) for p in files if campaign_name(p) == name), None)
    jobs = reader.jobs(campaign_jobs(store, name, limit=SCAN_LIMIT))  # oldest first
    if info is None and not jobs:
        raise ActionError(f"campaign {name} not found: no campaign file and no runs", 404)
    info = info or CampaignInfo(name)
    info.runs = len(jobs)
    info.latest = jobs[-1] if jobs else None
    _paused([info])
    points = burndown([(j, store.list_results(j.job_id)) for j in jobs])
    return info, safe(points, config)
