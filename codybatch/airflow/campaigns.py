"""Campaigns: a change for a fleet of repositories, launched as paced jobs of five.

A campaign file (include/campaigns/*.yaml) holds a job's fields plus `schedule`, its targets
(`repositories`, any number, and/or `select`), `rollout` and `budget`. Each file becomes its
own DAG file (a generated stub under dags/campaigns/), so an invalid campaign is an import
error of that file alone and never hides the others. A campaign run resolves the fleet,
plans the repositories that still need work and launches them as ordinary codybatch_job
runs of at most five repositories each (see codybatch.airflow.launch for the pacing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from codybatch.airflow.names import DAG_PREFIX
from codybatch.fleet import campaign_slug
from codybatch.rollout import Rollout, parse_rollout
from codybatch.selection import Selector, parse_selector, select_repositories
from codybatch.settings import Settings
from codybatch.spec import (
    INTERNAL_MESSAGES,
    MAX_REPOSITORIES,
    FieldError,
    JobSpec,
    SpecError,
    parse_repository,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN_FIELDS = {"schedule", "start_date", "enabled", "paused", "select", "rollout", "budget"}
SELECTION_CACHE = 600  # seconds a parse-time selection is reused (the DAG file is re-parsed often)
PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
STUB = """\
# Generated from {yaml}: edit the YAML, not this file (Cody Batch rewrites it).
from codybatch.airflow.launch import campaign_dag

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
    paused: bool  # its DAG starts paused (a person unpauses it) unless the file says false
    job: dict[str, Any]  # the job's fields, without repositories
    repositories: tuple[str, ...]  # listed targets (keys), any number
    selector: Selector | None
    rollout: Rollout
    spec: JobSpec  # the job's fields as parsed for its first job (a representative)

    @property
    def dag_id(self) -> str:
        return DAG_PREFIX + self.name

    @property
    def batch_size(self) -> int:
        """Repositories per job: at most five, what the rate allows per period, and what the
        budget could pay for at one repository's limit."""
        size = self.rollout.batch_size
        for budget in (self.rollout.budget.per_run_usd, self.rollout.budget.total_usd):
            if budget is not None:
                size = min(size, max(1, int(budget // self.spec.max_usd)))
        return size

    def job_spec(self, repositories: list[str]) -> dict[str, Any]:
        """The conf of one job of this campaign: its fields, these repositories."""
        return {**self.job, "repositories": list(repositories), "campaign": self.name}

    def error(self, message: str) -> CampaignError:
        return CampaignError(f"campaign file {self.path}: {message}")


def campaigns_dir(settings: Settings) -> Path:
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
    return campaign_slug(path.name)


def load_campaign(path: Path, settings: Settings, resolve_selection: bool = False) -> Campaign:
    """Read and validate a campaign file; CampaignError names the file and every bad field.

    With `resolve_selection`, a selector is also asked (cached for a few minutes) and one
    that selects nothing is an error too."""
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
    paused = data.get("paused", True)
    if not isinstance(paused, bool):
        errors.append(
            "paused: must be true or false (false: its runs start on schedule as soon as "
            "Airflow first sees the file)"
        )
    field_errors: list[FieldError] = []
    selector = parse_selector(data.get("select"), field_errors)
    job = {k: v for k, v in data.items() if k not in CAMPAIGN_FIELDS}
    raw_repositories = job.pop("repositories", None)
    if job.pop("campaign", None) is not None:  # the file name names it, as any entry point
        field_errors.append(FieldError("campaign", INTERNAL_MESSAGES["campaign"]))
    home = str(settings.home)
    if isinstance(raw_repositories, list):
        # Lets a campaign name repositories under the local store's home portably.
        raw_repositories = [
            r.replace("${CODYBATCH_HOME}", home) if isinstance(r, str) else r
            for r in raw_repositories
        ]
    elif raw_repositories is not None:  # a string is never split: as every entry point
        field_errors.append(
            FieldError(
                "repositories",
                "must be a list of repositories, one entry each (a YAML list: `- owner/name` "
                "per line)",
            )
        )
        raw_repositories = []
    if not raw_repositories and selector is None:
        field_errors.append(
            FieldError("repositories", "is required unless select is given: list repositories")
        )
    repositories, spec = _parse_targets(job, raw_repositories or [], name, settings, field_errors)
    rollout = parse_rollout(
        data.get("rollout"), data.get("budget"), spec.max_usd if spec else 2.0, field_errors
    )
    if (
        selector is not None
        and resolve_selection
        and not field_errors
        and not _cached_selection(selector, settings)
    ):
        query = selector.query() or f"the repositories of org {selector.org}"
        field_errors.append(
            FieldError(
                "select",
                f"selects no repository the allowlist allows ({query}): widen the selector "
                "or the allowlist",
            )
        )
    errors.extend(str(e) for e in field_errors)
    if errors:
        raise CampaignError(
            f"campaign file {path} is invalid:\n" + "\n".join(f"  - {e}" for e in errors)
        )
    assert spec is not None and isinstance(start, datetime)
    return Campaign(
        name,
        path,
        schedule,
        start,
        enabled,
        paused,
        job,
        tuple(repositories),
        selector,
        rollout,
        spec,
    )


def _parse_targets(
    job: dict[str, Any],
    raw: list[Any],
    name: str,
    settings: Settings,
    errors: list[FieldError],
) -> tuple[list[str], JobSpec | None]:
    """Check the listed repositories five at a time through the job model (every check of a
    job's repositories applies), and the job's fields once."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    spec = None
    chunks = [raw[i : i + MAX_REPOSITORIES] for i in range(0, len(raw), MAX_REPOSITORIES)]
    reported: set[str] = set()
    for number, chunk in enumerate(chunks or [[]]):
        offset = number * MAX_REPOSITORIES
        data = {**job, "repositories": chunk or ["github.com/example/example"]}
        check = settings if chunk else dataclasses.replace(settings, allowed_repositories=())
        try:
            # Checked as what people submit (e.g. local paths only under CODYBATCH_LOCAL_ROOT).
            parsed = JobSpec.parse(data, check, user_input=True)
            parsed = parsed.model_copy(update={"campaign": name})
            spec = spec or parsed
        except SpecError as exc:
            for error in exc.errors:
                field_name = error.field
                match = re.match(r"repositories\[(\d+)\]", field_name)
                if match:
                    field_name = f"repositories[{offset + int(match.group(1))}]"
                elif field_name == "repositories" and not chunk:
                    continue
                text = str(FieldError(field_name, error.message))
                if text not in reported:
                    reported.add(text)
                    errors.append(FieldError(field_name, error.message))
        for i, item in enumerate(chunk):
            if not isinstance(item, str):
                continue
            try:
                key = parse_repository(item).key
            except ValueError:
                continue
            if key in seen:
                if seen[key] < offset:  # within one chunk the job model says so already
                    errors.append(
                        FieldError(
                            f"repositories[{offset + i}]",
                            f"{item!r} is listed already (repositories[{seen[key]}]): list it once",
                        )
                    )
                continue
            seen[key] = offset + i
            keys.append(key)
    return keys, spec


def _cached_selection(selector: Selector, settings: Settings) -> list[str] | None:
    """The selection's keys, reused for a few minutes (parsing happens every 30 s or so);
    None when GitHub cannot be asked now (the run asks again and fails clearly then)."""
    token = json.dumps([selector.to_dict(), settings.allowed_repositories, settings.github_api_url])
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    path = Path(settings.home) / "cache" / f"selection-{digest}.json"
    try:
        if time.time() - path.stat().st_mtime < SELECTION_CACHE:
            return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    try:
        keys = [t.key for t in select_repositories(selector, settings).targets]
    except Exception as exc:  # an unreachable GitHub is not a bad file
        log.warning("could not check the campaign's selector now: %s", exc)
        return ["unknown"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(keys))
    except OSError:
        pass
    return keys


def resolve_targets(campaign: Campaign, settings: Settings) -> dict[str, str | None]:
    """This run's targets: listed plus selected repositories, key -> None (in) or why it
    leaves (archived, no longer allowed). Raises CampaignError when nothing is selected."""
    from codybatch.spec import is_allowed

    targets: dict[str, str | None] = {}
    for key in campaign.repositories:
        allowed = is_allowed(parse_repository(key), settings.allowed_repositories)
        targets[key] = None if allowed else "not in the allowlist any more"
    if campaign.selector is not None:
        try:
            selection = select_repositories(campaign.selector, settings)
        except Exception as exc:
            raise campaign.error(f"select: {exc}") from None
        for target in selection.targets:
            targets.setdefault(target.key, "archived" if target.archived else None)
        if not selection.targets and not campaign.repositories:
            raise campaign.error(
                "select: selects no repository the allowlist allows: widen the selector"
            )
    return targets


def sync_campaign_stubs(source: Path | None = None, target: Path | None = None) -> list[Path]:
    """Write one DAG stub per campaign file and remove stubs whose file is gone."""
    target = target or stubs_dir()
    target.mkdir(parents=True, exist_ok=True)
    wanted: dict[Path, str] = {}
    for path in campaign_files(source or campaigns_dir(Settings.from_env())):
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
