"""Job types: a prompt template with named variables, defaults and extra guidance for Claude.

Read from include/job-types/*.yaml, then CODYBATCH_JOB_TYPES_DIR (a file there replaces a
built-in one of the same name). A job names its type in `type`; `custom` is the prompt as
written.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codybatch.settings import Settings

log = logging.getLogger(__name__)

BUILT_IN = Path(__file__).resolve().parents[1] / "include" / "job-types"
DEFAULT_TYPE = "custom"
MAX_VARIABLE = 2_000
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# What a type may default: a job's own value always wins.
DEFAULTABLE = frozenset(
    {"steps", "verify", "max_turns", "max_tokens", "max_usd", "max_minutes", "command_timeout"}
)


class Variable(BaseModel):
    """One named value of a job type's template (a form field of its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    description: str = ""
    required: bool = True
    max_length: int = Field(MAX_VARIABLE, ge=1, le=MAX_VARIABLE)


class JobType(BaseModel):
    """A kind of change: its template, variables, defaults and guidance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    title: str
    description: str
    prompt: str = ""
    variables: dict[str, Variable] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    guidance: str = ""

    def render(self, values: dict[str, str]) -> str:
        """The template with each {variable} replaced by its value (missing ones: empty)."""
        text = _PLACEHOLDER.sub(lambda m: values.get(m[1], ""), self.prompt)
        return "\n".join(line.rstrip() for line in text.strip().splitlines()).strip()


class JobTypeError(ValueError):
    """A job-type file is invalid; the message names the file and the field."""


def load_job_type(path: Path) -> JobType:
    try:
        data = yaml.safe_load(path.read_text())
        job_type = JobType.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise JobTypeError(f"{path}: not readable YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise JobTypeError(f"{path}: {problems}") from None
    unknown = set(job_type.defaults) - DEFAULTABLE
    if unknown:
        raise JobTypeError(
            f"{path}: defaults.{sorted(unknown)[0]}: a job type may default only "
            f"{', '.join(sorted(DEFAULTABLE))}"
        )
    missing = set(_PLACEHOLDER.findall(job_type.prompt)) - set(job_type.variables)
    if missing:
        raise JobTypeError(f"{path}: prompt uses {{{sorted(missing)[0]}}}, not a variable")
    if path.stem != job_type.name:
        raise JobTypeError(f"{path}: name {job_type.name!r} must match the file name")
    return job_type


def job_types(settings: Settings) -> dict[str, JobType]:
    """Every job type by name: the built-in ones, then those of CODYBATCH_JOB_TYPES_DIR."""
    folders = [BUILT_IN]
    if settings.job_types_dir:
        folders.append(Path(settings.job_types_dir))
    files = tuple(
        (str(path), path.stat().st_mtime)
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.glob("*.yaml"))
    )
    return _load(files)


@lru_cache(maxsize=8)
def _load(files: tuple[tuple[str, float], ...]) -> dict[str, JobType]:
    found: dict[str, JobType] = {}
    for name, _ in files:
        try:
            job_type = load_job_type(Path(name))
        except JobTypeError as exc:
            log.warning("job type skipped: %s", exc)  # one broken file never hides the others
            continue
        found[job_type.name] = job_type
    found.setdefault(DEFAULT_TYPE, JobType(name=DEFAULT_TYPE, title="Custom", description=""))
    return found
