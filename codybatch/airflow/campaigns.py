"""Campaigns: a job spec in include/campaigns/*.yaml that comes back on a schedule.

Each campaign becomes its own DAG file (a generated stub under dags/campaigns/), so an
invalid campaign is an import error of that file alone and never hides the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from codybatch.settings import Settings
from codybatch.spec import JobSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]
DAG_PREFIX = "codybatch_campaign__"
CAMPAIGN_FIELDS = {"schedule", "start_date", "enabled"}
PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
STUB = """\
# Generated from {yaml}: edit the YAML, not this file (Cody Batch rewrites it).
from codybatch.airflow.campaigns import campaign_dag

dag = campaign_dag({yaml!r})
"""


DUPLICATE = """\
# Generated from {yaml}: its name clashes with another campaign file's (an Airflow DAG
# file that fails on purpose, so the clash shows as an import error).
raise ValueError(
    "campaign file {yaml}: its DAG id would be codybatch_campaign__{name}, which another "
    "campaign file already gives; rename one of the files"
)
"""


class CampaignError(ValueError):
    """A campaign file is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Campaign:
    name: str
    path: Path
    schedule: str
    start_date: datetime
    enabled: bool
    spec: JobSpec

    @property
    def dag_id(self) -> str:
        return DAG_PREFIX + self.name


def campaigns_dir(settings: Settings | None = None) -> Path:
    settings = settings or Settings.from_env()
    return Path(settings.campaigns_dir) if settings.campaigns_dir else ROOT / "include/campaigns"


def stubs_dir() -> Path:
    """dags/campaigns/ under Airflow's configured DAGs folder."""
    from airflow import settings as airflow_settings

    return Path(airflow_settings.DAGS_FOLDER) / "campaigns"


def campaign_files(folder: Path) -> list[Path]:
    """The campaign files (*.yaml, *.yml) of a folder, sorted; none when it does not exist."""
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def campaign_name(path: Path) -> str:
    """The campaign's name: its file name, as a DAG-id-safe slug."""
    return re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")


def load_campaign(path: Path, settings: Settings | None = None) -> Campaign:
    """Read and validate a campaign file; CampaignError names the file and every bad field."""
    name = campaign_name(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CampaignError(f"{path}: not readable YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: must be a mapping of fields (schedule, name, prompt, ...)")
    errors: list[str] = []
    schedule = data.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip():
        errors.append("schedule: is required: a cron expression ('0 6 * * 1') or a preset (@daily)")
    elif schedule.startswith("@"):
        if schedule not in PRESETS:
            errors.append(f"schedule: {schedule!r} is not a preset: use one of {sorted(PRESETS)}")
    else:
        from croniter import croniter

        if not croniter.is_valid(schedule):
            errors.append(f"schedule: {schedule!r} is not a valid cron expression")
    start = data.get("start_date", date(2024, 1, 1))
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            errors.append(f"start_date: {start!r} is not a date (YYYY-MM-DD)")
    if isinstance(start, date) and not isinstance(start, datetime):
        start = datetime(start.year, start.month, start.day)
    if isinstance(start, datetime) and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    elif not isinstance(start, datetime):
        errors.append("start_date: must be a date (YYYY-MM-DD)")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append("enabled: must be true or false")
    job = {k: v for k, v in data.items() if k not in CAMPAIGN_FIELDS}
    job["campaign"] = name
    home = str((settings or Settings.from_env()).home)
    if isinstance(job.get("repositories"), list):
        # Lets a campaign name repositories under the local store's home portably.
        job["repositories"] = [
            r.replace("${CODYBATCH_HOME}", home) if isinstance(r, str) else r
            for r in job["repositories"]
        ]
    spec = None
    try:
        spec = JobSpec.parse(job, settings)
    except SpecError as exc:
        errors.extend(str(e) for e in exc.errors)
    if errors:
        raise CampaignError(
            f"campaign file {path} is invalid:\n" + "\n".join(f"  - {e}" for e in errors)
        )
    assert spec is not None and isinstance(start, datetime)
    return Campaign(name, path, schedule, start, enabled, spec)


def campaign_dag(file_name: str) -> Any:
    """The DAG of one campaign file (None when disabled); raises CampaignError when invalid."""
    from codybatch.airflow.dag import build_job_dag

    campaign = load_campaign(campaigns_dir() / file_name)
    if not campaign.enabled:
        return None
    return build_job_dag(
        dag_id=campaign.dag_id,
        schedule=campaign.schedule,
        start_date=campaign.start_date,
        defaults=campaign.spec.to_dict(),
        tags=["codybatch", "campaign"],
        max_active_runs=1,  # runs of a campaign share its branch: never two at once
        description=f"Campaign {campaign.spec.name}: {campaign.path.name}",
    )


def sync_campaign_stubs(source: Path | None = None, target: Path | None = None) -> list[Path]:
    """Write one DAG stub per campaign file and remove stubs whose file is gone."""
    target = target or stubs_dir()
    target.mkdir(parents=True, exist_ok=True)
    wanted: dict[Path, str] = {}
    for path in campaign_files(source or campaigns_dir()):
        name = campaign_name(path)
        stub = target / f"{name}.py"
        if stub in wanted:
            # Two files, one DAG id: the second is reported as its own import error.
            stub = target / f"{name}__duplicate_{path.stem}.py"
            wanted[stub] = DUPLICATE.format(yaml=path.name, name=name)
            continue
        wanted[stub] = STUB.format(yaml=path.name, name=name)
    for stub in target.glob("*.py"):
        if stub not in wanted:
            stub.unlink()
    for stub, text in wanted.items():
        if not stub.exists() or stub.read_text() != text:
            stub.write_text(text)  # rewritten only when changed: no needless re-parsing
    return sorted(wanted)
