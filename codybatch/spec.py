"""JobSpec: the one typed job model (pydantic) and the one parse of every entry point.

The model's fields are the only definition of a job's fields, types, limits, defaults,
aliases (the seed API's camelCase) and descriptions; the trigger form's Params, the plugin
API's schema, the New job form and the README's field table are derived from it.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from annotated_types import MaxLen
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from codybatch.settings import Settings
from codybatch.text import (
    MULTI_LINE_PATTERN,
    ONE_LINE_PATTERN,
    has_credentials,
    multi_line_problem,
    one_line_problem,
)

MAX_REPOSITORIES = 5
MAX_PROMPT = 20_000
MAX_NAME = 100
MAX_DESCRIPTION = 5_000
MAX_STEPS = 20
MAX_COMMAND = 4_000
MAX_ALLOWED_COMMANDS = 50
EFFORTS = ("low", "medium", "high", "xhigh", "max")
MERGE_MODES = ("off", "auto", "when_green")
MERGE_METHODS = ("merge", "squash", "rebase")
ADVANCED = "Advanced"

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_HOST = re.compile(r"^[a-z0-9.-]+(:\d+)?$")
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\]+(?<![/.])$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_RENDERED = 2 * MAX_PROMPT


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A job spec is invalid; carries every error found, each naming its field."""

    def __init__(self, errors: Sequence[FieldError]):
        self.errors = list(errors)
        super().__init__("invalid job spec:\n" + "\n".join(f"  - {e}" for e in self.errors))

    def as_dict(self) -> list[dict[str, str]]:
        return [{"field": e.field, "message": e.message} for e in self.errors]


@dataclass(frozen=True)
class Repository:
    """A repository on GitHub (or GitHub Enterprise) or a local git repository."""

    key: str
    host: str = ""
    owner: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_local(self) -> bool:
        return bool(self.path)

    @property
    def full_name(self) -> str:
        """owner/name on GitHub, the path for a local repository."""
        return self.path or f"{self.owner}/{self.name}"


def parse_repository(raw: str) -> Repository:
    """Normalise a repository reference; raise ValueError with the fix when malformed."""
    text = raw.strip()
    if not text:
        raise ValueError("is empty: give owner/name, HOST/owner/name or an absolute path")
    if has_credentials(text):  # never echoed: the message names the fix only
        raise ValueError(
            "is a URL with a user name or password in it: remove them (Cody Batch "
            "authenticates with GITHUB_TOKEN) and give owner/name or https://HOST/owner/name"
        )
    problem = one_line_problem(text)
    if problem:
        raise ValueError(problem)
    if "," in text or "\n" in text:
        raise ValueError(
            f"{raw!r} holds several repositories: list each one as its own entry "
            "(one per line in a form)"
        )
    if text.startswith("file://"):
        url = urlparse(text)
        text = url.path
        # file://home/x would silently become /x: only file:///abs/path is meant.
        if url.netloc not in ("", "localhost") or not text.startswith("/"):
            raise ValueError(
                f"{raw!r} is not a file:// URL with an absolute path: write file:///abs/path"
            )
    if text.startswith("/"):
        path = Path(text).resolve()
        return Repository(key=str(path), path=str(path))
    if text.startswith(("./", "../", "~")):
        raise ValueError(f"{raw!r} is a relative path: give an absolute path or a file:// URL")
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme not in ("https", "http"):
            raise ValueError(f"{raw!r}: only https URLs, owner/name or local paths are accepted")
        text = (parsed.netloc + parsed.path).rstrip("/")
    if text.endswith(".git"):
        text = text[:-4]
    parts = [p for p in text.split("/")]
    if len(parts) == 2:
        host, owner, name = "github.com", parts[0], parts[1]
    elif len(parts) == 3:
        host, owner, name = parts[0].lower(), parts[1], parts[2]
        if host == "www.github.com":
            host = "github.com"
    else:
        raise ValueError(
            f"{raw!r} is not a repository: use owner/name, github.com/owner/name, "
            "HOST/owner/name or an absolute path to a local git repository"
        )
    if not _HOST.match(host) or ("." not in host and host != "localhost"):
        raise ValueError(f"{raw!r}: {host!r} is not a host name")
    for part in (owner, name):
        if not part or not _SEGMENT.match(part) or part in (".", ".."):
            raise ValueError(
                f"{raw!r}: {part!r} is not a valid owner or repository name "
                "(letters, digits, '-', '_' and '.')"
            )
    return Repository(key=f"{host}/{owner}/{name}".lower(), host=host, owner=owner, name=name)


def is_allowed(repository: Repository, patterns: Sequence[str]) -> bool:
    """True when no allowlist is set or the repository key matches one of its globs."""
    if not patterns:
        return True
    candidates = {repository.key}
    if not repository.is_local and repository.host == "github.com":
        candidates.add(f"{repository.owner}/{repository.name}".lower())
    return any(
        fnmatch.fnmatchcase(candidate, _normalise_pattern(pattern))
        for pattern in patterns
        for candidate in candidates
    )


def _under(path: Path, root: Path) -> bool:
    return path == root.resolve() or root.resolve() in path.parents


def repository_allowed(repository: Repository, settings: Settings) -> bool:
    """The allowlist, or without one the default: GitHub repositories, and local ones only
    under CODYBATCH_LOCAL_ROOT."""
    if settings.allowed_repositories:
        return is_allowed(repository, settings.allowed_repositories)
    return not repository.is_local or _under(Path(repository.path), settings.local_root)


def _normalise_pattern(pattern: str) -> str:
    pattern = pattern.strip()
    if pattern.startswith("file://"):
        return urlparse(pattern).path
    return pattern if pattern.startswith("/") else pattern.lower()


@dataclass(frozen=True)
class Range:
    """The values a user may give a limit (checked by JobSpec.parse, not on construction)."""

    low: int | float
    high: int | float


def _fail(message: str) -> PydanticCustomError:
    """A field error whose message is ours (pydantic keeps the field's location)."""
    return PydanticCustomError("job_field", "{message}", {"message": message})


class JobSpec(BaseModel):
    """A validated job: a prompt (or job type) and/or steps applied to 1-5 repositories."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(
        title="Job name",
        description="What this change is, in a few words (1-100 characters, one line). Also "
        "names the PR branch (codybatch/<slug>), so re-running a name updates the same PRs.",
        min_length=1,
        max_length=MAX_NAME,
    )
    description: str = Field(
        "",
        title="Description",
        description="Why the change is made; goes into the pull request body.",
        max_length=MAX_DESCRIPTION,
        json_schema_extra={"format": "multiline"},
    )
    prompt: str = Field(
        "",
        title="Prompt for Claude",
        description="The change to make, as you would tell a colleague (up to 20,000 "
        "characters). Required unless steps (or a job type's variables) are given.",
        max_length=MAX_PROMPT,
        json_schema_extra={"format": "multiline"},
    )
    repositories: tuple[str, ...] = Field(
        title="Repositories",
        description=f"1 to {MAX_REPOSITORIES} of owner/name, github.com/owner/name, "
        "HOST/owner/name (GitHub Enterprise) or an absolute path / file:// URL of a local git "
        "repository (patch only), one per line.",
        min_length=1,
        max_length=MAX_REPOSITORIES,
    )
    create_pull_requests: bool = Field(
        False,
        validation_alias=AliasChoices("create_pull_requests", "createPullRequests"),
        title="Open pull requests",
        description="Push a branch and open (or update) a pull request per changed "
        "repository. Off: patches only, publish later with `codybatch publish`.",
    )
    steps: tuple[str, ...] = Field(
        (),
        title="Shell steps",
        description=f"Commands run in each checkout before Claude, one per line (at most "
        f"{MAX_STEPS}).",
        max_length=MAX_STEPS,
        json_schema_extra={"section": ADVANCED},
    )
    base_branch: str | None = Field(
        None,
        validation_alias=AliasChoices("base_branch", "baseBranch"),
        title="Base branch",
        description="Branch to change; empty: the repository's default branch.",
        max_length=255,
        json_schema_extra={"section": ADVANCED},
    )
    verify: str | None = Field(
        None,
        title="Verify command",
        description="A check run after the change (e.g. `make test`); on failure Claude gets "
        "the output and fixes, up to 3 rounds.",
        max_length=MAX_COMMAND,
        json_schema_extra={"section": ADVANCED},
    )
    model: str | None = Field(
        None,
        title="Claude model",
        description="Empty: CODYBATCH_MODEL.",
        max_length=100,
        json_schema_extra={"section": ADVANCED},
    )
    draft: bool = Field(
        True,
        title="Draft pull requests",
        description="Open pull requests as drafts.",
        json_schema_extra={"section": ADVANCED},
    )
    campaign: str | None = Field(
        None,
        title="Campaign",
        description="Set by a campaign's own DAG: its name.",
        max_length=100,
        json_schema_extra={"internal": True},
    )
    max_turns: Annotated[int, Range(1, 500)] = Field(
        50,
        validation_alias=AliasChoices("max_turns", "maxTurns"),
        title="Max turns per repository",
        description="Claude turns per repository (default 50).",
        json_schema_extra={"section": ADVANCED},
    )
    max_tokens: Annotated[int, Range(1_000, 50_000_000)] = Field(
        5_000_000,
        validation_alias=AliasChoices("max_tokens", "maxTokens"),
        title="Max tokens per repository",
        description="Tokens per repository (default 5,000,000).",
        json_schema_extra={"section": ADVANCED},
    )
    max_usd: Annotated[float, Range(0.01, 500.0)] = Field(
        2.0,
        validation_alias=AliasChoices("max_usd", "maxUsd"),
        title="Max USD per repository",
        description="Cost per repository (default 2).",
        json_schema_extra={"section": ADVANCED},
    )
    max_minutes: Annotated[float, Range(1.0, 24 * 60.0)] = Field(
        30.0,
        validation_alias=AliasChoices("max_minutes", "maxMinutes"),
        title="Max minutes per repository",
        description="Wall time per repository (default 30).",
        json_schema_extra={"section": ADVANCED},
    )
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        None,
        title="Effort",
        description="Claude's effort; empty: CODYBATCH_EFFORT, sent only where the model "
        "supports it.",
        json_schema_extra={"section": ADVANCED},
    )
    shell: bool | None = Field(
        None,
        title="Shell tool",
        description="Offer Claude a sandboxed shell; empty: wherever the sandbox works.",
        json_schema_extra={"section": ADVANCED},
    )
    network: bool = Field(
        False,
        title="Network access",
        description="Commands run for Claude, steps and verify may reach the network.",
        json_schema_extra={"section": ADVANCED},
    )
    command_timeout: Annotated[int, Range(1, 3_600)] = Field(
        120,
        validation_alias=AliasChoices("command_timeout", "commandTimeout"),
        title="Command timeout",
        description="Seconds per command Claude runs (default 120).",
        json_schema_extra={"section": ADVANCED},
    )
    allowed_commands: tuple[str, ...] = Field(
        (),
        validation_alias=AliasChoices("allowed_commands", "allowedCommands"),
        title="Allowed commands",
        description="Command prefixes Claude may run, e.g. `npm test`; empty: any command.",
        max_length=MAX_ALLOWED_COMMANDS,
        json_schema_extra={"section": ADVANCED},
    )
    type: str = Field(
        "custom",
        title="Job type",
        description="The job type whose prompt template and defaults apply (default custom: "
        "the prompt as written).",
        max_length=100,
    )
    variables: dict[str, str] = Field(
        default_factory=dict,
        title="Job type variables",
        description="Values of the job type's variables, e.g. {old: ..., new: ...}.",
        json_schema_extra={"section": ADVANCED},
    )
    review_before_publish: bool = Field(
        False,
        validation_alias=AliasChoices("review_before_publish", "reviewBeforePublish"),
        title="Review before publishing",
        description="Patch only, then publish what a person approves (needs create_pull_requests).",
        json_schema_extra={"section": ADVANCED},
    )
    merge: Literal["off", "auto", "when_green"] = Field(
        "off",
        title="Merge",
        description="off, auto or when_green.",
        json_schema_extra={"section": ADVANCED},
    )
    merge_method: Literal["merge", "squash", "rebase"] = Field(
        "squash",
        validation_alias=AliasChoices("merge_method", "mergeMethod"),
        title="Merge method",
        description="merge, squash or rebase.",
        json_schema_extra={"section": ADVANCED},
    )
    max_fix_rounds: Annotated[int, Range(0, 10)] = Field(
        2,
        validation_alias=AliasChoices("max_fix_rounds", "maxFixRounds"),
        title="Max fix rounds",
        description="Follow-up rounds per pull request (default 2).",
        json_schema_extra={"section": ADVANCED},
    )

    rendered_prompt: str | None = Field(
        None,
        title="Task for Claude",
        description="The job type's template filled with its variables, then the prompt: "
        "what Claude is asked to do (derived when the job is submitted).",
        max_length=MAX_RENDERED,
        json_schema_extra={"internal": True},
    )
    guidance: str = Field(
        "",
        title="Job type guidance",
        description="The job type's extra guidance for Claude, sent after the fixed system "
        "prompt (derived when the job is submitted).",
        max_length=10_000,
        json_schema_extra={"internal": True},
    )

    # field-level rules: each raises one error naming the fix, with our own wording

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        text = _text_value("name", value, required=True)
        if _CONTROL.search(text) or not re.search(r"[A-Za-z0-9]", text):
            raise _fail("must be one line with at least one letter or digit")
        _one_line(text)
        return text.strip()

    @field_validator("prompt", "description", mode="before")
    @classmethod
    def _long_text(cls, value: Any, info: Any) -> str:
        text = _text_value(info.field_name, value) or ""
        problem = multi_line_problem(text)
        if problem:
            raise _fail(problem)
        return text

    @field_validator("verify", "model", "campaign", "base_branch", mode="before")
    @classmethod
    def _optional_text(cls, value: Any, info: Any) -> str | None:
        text = _text_value(info.field_name, value) or None
        if text is None:
            return None
        if info.field_name == "verify":
            problem = multi_line_problem(text)
            if problem:
                raise _fail(problem)
            return text
        _one_line(text)
        if info.field_name == "base_branch":
            _check_branch(text)
        return text

    @field_validator("rendered_prompt", "guidance", mode="before")
    @classmethod
    def _derived(cls, value: Any, info: Any) -> str | None:
        if value is None:
            return cls.model_fields[info.field_name].default
        text = _text_value(info.field_name, value)
        problem = multi_line_problem(text)
        if problem:
            raise _fail(problem)
        return text

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> str:
        text = _text_value("type", value) or "custom"
        _one_line(text)
        return text

    @field_validator(
        "create_pull_requests", "draft", "network", "review_before_publish", mode="before"
    )
    @classmethod
    def _flag(cls, value: Any, info: Any) -> bool:
        if value is None:
            return cls.model_fields[info.field_name].default
        return _bool_value(value)

    @field_validator("shell", mode="before")
    @classmethod
    def _shell(cls, value: Any) -> bool | None:
        return None if value is None else _bool_value(value)

    @field_validator(
        "max_turns",
        "max_tokens",
        "max_usd",
        "max_minutes",
        "command_timeout",
        "max_fix_rounds",
        mode="before",
    )
    @classmethod
    def _limit(cls, value: Any, info: Any) -> int | float:
        field = cls.model_fields[info.field_name]
        if value is None:
            return field.default
        kind = field.annotation
        low, high = _bounds(field)
        if kind is float:
            low, high = float(low), float(high)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(f"must be a number between {low} and {high}")
        if not math.isfinite(value):
            raise _fail(f"is {value}, not a finite number: choose a value between {low} and {high}")
        if kind is int and value != int(value):
            raise _fail("must be a whole number")
        # Code (tests, benchmarks) may construct a spec with tighter limits than a user may set.
        if info.context is not None and not low <= value <= high:
            raise _fail(f"is {value}: choose a value between {low} and {high}")
        return kind(value)

    @field_validator("effort", "merge", "merge_method", mode="before")
    @classmethod
    def _choice(cls, value: Any, info: Any) -> str | None:
        field = cls.model_fields[info.field_name]
        if value is None or value == "":
            return field.default
        choices = _choices(field)
        if value not in choices:
            raise _fail(f"is {value!r}: choose one of {', '.join(choices)}")
        return value

    @field_validator("allowed_commands", mode="before")
    @classmethod
    def _allowed_commands(cls, value: Any) -> tuple[str, ...]:
        if value is None or value == [] or value == ():
            return ()
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and v.strip() for v in value
        ):
            raise _fail("must be a list of command prefixes, e.g. 'npm test'")
        if len(value) > MAX_ALLOWED_COMMANDS:
            raise _fail(f"has {len(value)} patterns: at most {MAX_ALLOWED_COMMANDS}")
        for command in value:
            _one_line(command)
        return tuple(v.strip() for v in value)

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> dict[str, str]:
        if value is None or value == {}:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise _fail("must be an object of names to text values")
        for key, text in value.items():
            problem = one_line_problem(key) or multi_line_problem(text)
            if problem:
                raise _fail(f"{key!r}: {problem}")
        return dict(value)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> tuple[str, ...]:
        if value is None or value == [] or value == ():
            return ()
        if isinstance(value, str):
            raise _fail("must be a list of shell commands, one entry each (one per line in a form)")
        if not isinstance(value, list | tuple):
            raise _fail("must be a list of shell commands")
        if len(value) > MAX_STEPS:
            raise _fail(f"has {len(value)} commands: at most {MAX_STEPS}")
        return tuple(value)  # each command is checked with its index by _rules

    @field_validator("repositories", mode="before")
    @classmethod
    def _repositories(cls, value: Any) -> tuple[Any, ...]:
        if value is None or value in ("", [], ()):
            raise _fail(f"is required: list 1 to {MAX_REPOSITORIES} repositories (owner/name)")
        if isinstance(value, str):
            raise _fail(
                "must be a list of repositories, one entry each (one per line in a form), "
                'e.g. ["acme/billing", "acme/web"]'
            )
        if not isinstance(value, list | tuple):
            raise _fail("must be a list of repositories (owner/name)")
        if len(value) > MAX_REPOSITORIES:
            raise _fail(
                f"has {len(value)} repositories: at most {MAX_REPOSITORIES} per job; "
                "split the work into several jobs"
            )
        return tuple(value)  # each entry is checked with its index by _rules

    def repository(self, key: str) -> Repository:
        """The parsed repository of this job with that key (or raw reference)."""
        wanted = parse_repository(key).key
        for raw in self.repositories:
            if raw == wanted:
                return parse_repository(raw)
        raise KeyError(f"{key!r} is not a repository of job {self.name!r}")

    @property
    def task(self) -> str:
        """What Claude is asked to do: the rendered job type, or the prompt as written."""
        return self.prompt if self.rendered_prompt is None else self.rendered_prompt

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (snake_case, lists), as stored."""
        return self.model_dump(mode="json")

    def conf(self) -> dict[str, Any]:
        """The fields a person set, normalised: the conf of the job's DAG run (its validate
        task derives the rest again)."""
        return {k: v for k, v in self.to_dict().items() if v is not None and k not in INTERNAL}

    @classmethod
    def parse(
        cls,
        data: Mapping[str, Any],
        settings: Settings,
        check_local: bool = True,
        *,
        user_input: bool = False,
    ) -> JobSpec:
        """Validate raw input (trigger conf, YAML, API body); raise SpecError with every error.

        `user_input=True` (every entry point) refuses the fields Cody Batch sets itself
        (campaign, the derived ones); a stored spec keeps them. `check_local=False` skips
        checking that local repositories exist (a worker checks only its own, by cloning it).
        """
        if not isinstance(data, Mapping):
            raise SpecError([FieldError("spec", "must be an object of fields (name, prompt, ...)")])
        errors: list[FieldError] = []
        raw: dict[str, Any] = {}
        for key, value in data.items():
            target = ALIASES.get(key, key)
            if target in raw and value != raw[target]:
                errors.append(FieldError(key, f"given twice (as {target!r} too): keep one"))
            raw[target] = value
        for key in sorted(set(raw) - KNOWN, key=str):
            errors.append(
                FieldError(str(key), f"is not a known field: use one of {', '.join(sorted(KNOWN))}")
            )
        if user_input:
            for key in sorted(INTERNAL & set(raw)):
                errors.append(FieldError(key, INTERNAL_MESSAGES.get(key, DERIVED)))
                raw.pop(key)
        # Missing required fields go through their validators too: one wording for both.
        known = {name: None for name in REQUIRED} | {k: v for k, v in raw.items() if k in KNOWN}
        errors.extend(_apply_job_type(known, settings))
        bad: set[str] = set()
        spec = None
        try:
            spec = cls.model_validate(known, context={"settings": settings})
        except ValidationError as exc:
            for error in exc.errors():
                if len(error["loc"]) > 1 and error["loc"][0] in _ITEMS:
                    continue
                field = ".".join(str(part) for part in error["loc"]) or "spec"
                bad.add(str(error["loc"][0]) if error["loc"] else "spec")
                message = (error.get("ctx") or {}).get("message") or error["msg"]
                errors.append(FieldError(field, str(message)))
        errors.extend(_rules(known, bad, settings, check_local, user_input))
        if errors or spec is None:
            raise SpecError(errors)
        keys = tuple(parse_repository(r).key for r in spec.repositories)
        steps = tuple(spec.steps)
        return spec.model_copy(update={"repositories": keys, "steps": steps})


ALIASES: dict[str, str] = {
    choice: name
    for name, info in JobSpec.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
    for choice in info.validation_alias.choices
    if choice != name
}
KNOWN = frozenset(JobSpec.model_fields)
INTERNAL = frozenset(
    name
    for name, info in JobSpec.model_fields.items()
    if (info.json_schema_extra or {}).get("internal")
)
DERIVED = "is derived from the job type when the job is submitted: remove it"
INTERNAL_MESSAGES = {"campaign": "is set by a campaign's own runs only: remove it"}
REQUIRED = tuple(name for name, info in JobSpec.model_fields.items() if info.is_required())
_ITEMS = ("repositories", "steps")  # their entries are checked with their index by _rules


def _max_length(field: str) -> int:
    return next(m.max_length for m in JobSpec.model_fields[field].metadata if isinstance(m, MaxLen))


def _bounds(info: FieldInfo) -> tuple[int | float, int | float]:
    limit = next(m for m in info.metadata if isinstance(m, Range))
    return limit.low, limit.high


def _choices(info: FieldInfo) -> tuple[str, ...]:
    """The values of a Literal field (also inside `Literal[...] | None`)."""
    out: list[str] = []
    for arg in get_args(info.annotation):
        out.extend(get_args(arg) or ([arg] if isinstance(arg, str) else []))
    return tuple(out)


def _one_line(text: str) -> None:
    problem = one_line_problem(text)
    if problem:
        raise _fail(problem)


def _check_branch(name: str) -> None:
    """git check-ref-format for a branch, and never an option to git."""
    if name.startswith("-"):
        raise _fail(f"{name!r} starts with '-': a branch name never does; remove it")
    parts = name.split("/")
    if (
        not _BRANCH.match(name)
        or name == "@"
        or any(p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        raise _fail(f"{name!r} is not a valid git branch name")


def _text_value(field: str, value: Any, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise _fail("is required")
        return ""
    if not isinstance(value, str):
        raise _fail(f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise _fail("is required: it is blank")
    limit = _max_length(field)
    if len(value) > limit:
        raise _fail(f"is {len(value):,} characters: shorten it to at most {limit:,}")
    return value


def _bool_value(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(f"must be true or false, not {value!r}")


def _flag_of(raw: Mapping[str, Any], name: str) -> bool:
    try:
        return _bool_value(raw[name]) if raw.get(name) is not None else False
    except PydanticCustomError:
        return False


def _apply_job_type(known: dict[str, Any], settings: Settings) -> list[FieldError]:
    """Fill in the job type: its defaults where the job sets none, its template rendered with
    the variables (then the prompt) and its guidance. A stored spec was filled in already."""
    if known.get("rendered_prompt") is not None:
        return []
    name = known.get("type") or "custom"
    values = known.get("variables") or {}
    if not isinstance(name, str) or not isinstance(values, Mapping):
        return []  # the fields' own checks report these
    from codybatch.jobtypes import DEFAULT_TYPE, job_types

    types = job_types(settings)
    if name not in types:
        return [FieldError("type", f"is {name!r}: choose one of {', '.join(sorted(types))}")]
    job_type = types[name]
    if name == DEFAULT_TYPE and not values:
        return []
    errors = [
        FieldError(
            f"variables.{key}",
            f"is not a variable of the {name} job type: use "
            + (", ".join(job_type.variables) or "none (remove variables)"),
        )
        for key in values
        if key not in job_type.variables
    ]
    prompt = known.get("prompt") if isinstance(known.get("prompt"), str) else ""
    use_template = bool(job_type.prompt) and (bool(values) or not prompt.strip())
    for key, variable in job_type.variables.items():
        value = values.get(key)
        if use_template and variable.required and not (isinstance(value, str) and value.strip()):
            errors.append(
                FieldError(
                    f"variables.{key}",
                    f"is required by the {name} job type ({variable.title}): give it, or write "
                    "the whole prompt instead",
                )
            )
        elif isinstance(value, str) and len(value) > variable.max_length:
            errors.append(
                FieldError(
                    f"variables.{key}",
                    f"is {len(value):,} characters: shorten it to at most {variable.max_length:,}",
                )
            )
    for key, value in job_type.defaults.items():
        if known.get(key) in (None, "", [], ()):
            known[key] = value
    if not errors:
        rendered = job_type.render(dict(values)) if use_template else ""
        known["rendered_prompt"] = "\n\n".join(p for p in (rendered, prompt.strip()) if p)
        known["guidance"] = job_type.guidance.strip()
    return errors


def _rules(
    raw: Mapping[str, Any], bad: set[str], settings: Settings, check_local: bool, user_input: bool
) -> list[FieldError]:
    """The rules across fields and entries: steps and repositories one by one, prompt or
    steps, the allowlist, duplicates after normalising, what needs pull requests."""
    errors: list[FieldError] = []
    commands = _step_commands(raw.get("steps"), errors) if "steps" not in bad else []
    prompt = raw.get("rendered_prompt") or raw.get("prompt")
    if not (isinstance(prompt, str) and prompt.strip()) and not commands:
        errors.append(
            FieldError("prompt", "is required unless steps are given: say what to change")
        )
    create_prs = _flag_of(raw, "create_pull_requests")
    if _flag_of(raw, "review_before_publish") and not create_prs:
        errors.append(
            FieldError(
                "review_before_publish",
                "needs create_pull_requests: true (approval decides what is published)",
            )
        )
    if isinstance(raw.get("repositories"), list | tuple):  # entries even when too many
        errors.extend(
            _repository_errors(
                raw.get("repositories"), settings, create_prs, check_local, user_input
            )
        )
    return errors


def _step_commands(value: Any, errors: list[FieldError]) -> list[str]:
    if not isinstance(value, list | tuple):
        return []
    commands = []
    for i, command in enumerate(value):
        if not isinstance(command, str) or not command.strip():
            errors.append(FieldError(f"steps[{i}]", "must be a non-empty shell command"))
        elif len(command) > MAX_COMMAND:
            errors.append(FieldError(f"steps[{i}]", f"is longer than {MAX_COMMAND} characters"))
        elif multi_line_problem(command):
            errors.append(FieldError(f"steps[{i}]", str(multi_line_problem(command))))
        else:
            commands.append(command)
    return commands


def _repository_errors(
    value: Any, settings: Settings, create_prs: bool, check_local: bool, user_input: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    keys: list[str] = []
    for i, item in enumerate(value if isinstance(value, list | tuple) else ()):
        label = f"repositories[{i}]"
        if not isinstance(item, str):
            errors.append(FieldError(label, f"must be a string, not {type(item).__name__}"))
            continue
        try:
            repo = parse_repository(item)
        except ValueError as exc:
            errors.append(FieldError(label, str(exc)))
            continue
        if repo.key in keys:
            errors.append(
                FieldError(label, f"{item!r} is a duplicate of {repo.key!r}: list it once")
            )
            continue
        # The default for local paths applies to what people submit; a worker checks its own.
        outside = (
            user_input
            and repo.is_local
            and not settings.allowed_repositories
            and not _under(Path(repo.path), settings.local_root)
        )
        if outside:
            errors.append(
                FieldError(
                    label,
                    f"{repo.path} is outside CODYBATCH_LOCAL_ROOT ({settings.local_root}): local "
                    "repositories must be under it; move the repository there, or set "
                    "CODYBATCH_LOCAL_ROOT (or CODYBATCH_ALLOWED_REPOSITORIES) to allow it",
                )
            )
        elif not is_allowed(repo, settings.allowed_repositories):
            errors.append(
                FieldError(
                    label,
                    f"{repo.key!r} is not in the allowlist "
                    f"(CODYBATCH_ALLOWED_REPOSITORIES={','.join(settings.allowed_repositories)}): "
                    "pick an allowed repository or ask an admin to allow it",
                )
            )
        if repo.is_local:
            git_dir = (Path(repo.path) / ".git").exists() or (Path(repo.path) / "HEAD").exists()
            if check_local and not git_dir:
                errors.append(FieldError(label, f"{repo.path} is not a git repository"))
            if create_prs:
                errors.append(
                    FieldError(
                        label,
                        f"{repo.path} is a local repository: pull requests need a GitHub "
                        "repository; set create_pull_requests to false",
                    )
                )
        keys.append(repo.key)
    return errors


MULTI_LINE_FIELDS = ("prompt", "description", "verify")


def _json_type(info: FieldInfo) -> tuple[str, dict[str, Any]]:
    """The JSON type of a field and its type-specific keywords (items, enum)."""
    annotation = info.annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    base = args[0] if len(args) == 1 and get_args(annotation) else annotation
    if _choices(info):
        return "string", {"enum": list(_choices(info))}
    if base is bool:
        return "boolean", {}
    if base is int:
        return "integer", {}
    if base is float:
        return "number", {}
    if base is str:
        return "string", {}
    if getattr(base, "__origin__", None) is tuple:
        return "array", {"items": {"type": "string"}}
    if getattr(base, "__origin__", None) is dict:
        return "object", {"additionalProperties": {"type": "string"}}
    raise TypeError(f"no JSON type for {annotation}")


def field_schema(name: str) -> dict[str, Any]:
    """The JSON schema of one job field: type, limits, title, description, default.

    Optional fields also accept null, so a form does not mark them required."""
    info = JobSpec.model_fields[name]
    kind, schema = _json_type(info)
    extra = dict(info.json_schema_extra or {})
    out: dict[str, Any] = {
        "type": kind if info.is_required() else ["null", kind],
        "title": info.title,
        "description": info.description,
        **schema,
    }
    if "enum" in out and not info.is_required():
        out["enum"] = [None, *out["enum"]]
    for meta in info.metadata:
        if isinstance(meta, MaxLen):
            out["maxItems" if kind == "array" else "maxLength"] = meta.max_length
        elif type(meta).__name__ == "MinLen":
            out["minItems" if kind == "array" else "minLength"] = meta.min_length
        elif isinstance(meta, Range):
            out["minimum"], out["maximum"] = meta.low, meta.high
    if name == "steps":
        out["items"] = {"type": "string", "maxLength": MAX_COMMAND, "pattern": MULTI_LINE_PATTERN}
    elif name == "allowed_commands":
        out["items"] = {"type": "string", "pattern": ONE_LINE_PATTERN}
    elif name == "repositories":
        out["items"] = {"type": "string", "maxLength": 1_000, "pattern": ONE_LINE_PATTERN}
    elif name == "variables":
        out["additionalProperties"] = {"type": "string", "pattern": MULTI_LINE_PATTERN}
    elif kind == "string" and "enum" not in out:
        multi = name in MULTI_LINE_FIELDS
        out["pattern"] = MULTI_LINE_PATTERN if multi else ONE_LINE_PATTERN
    if kind == "number":
        # NaN passes every comparison; this refuses it (no real number is in the inner range).
        out["not"] = {"type": "number", "minimum": 1e308, "maximum": -1e308}
    if extra.get("section"):
        out["section"] = extra["section"]
    if extra.get("format"):
        out["format"] = extra["format"]
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        out["default"] = list(default) if isinstance(default, tuple) else default
    return out


def param_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """A JSON schema per field a person may set (trigger form, API docs), in form order."""
    from codybatch.jobtypes import job_types

    schemas = {name: field_schema(name) for name in JobSpec.model_fields if name not in INTERNAL}
    types = job_types(settings)
    schemas["type"]["enum"] = [None, *sorted(types)]
    schemas["type"]["values_display"] = {n: t.title for n, t in types.items()}
    schemas["type"].pop("pattern", None)
    return schemas


def field_table() -> str:
    """The README's table of job fields, written from the model (a test keeps them equal)."""
    camel = {name: alias for alias, name in ALIASES.items()}
    rows = ["| Field | Required | Default | Meaning |", "|---|---|---|---|"]
    for name, info in JobSpec.model_fields.items():
        if name in INTERNAL:
            continue
        label = f"`{name}`" + (f" (`{camel[name]}`)" if name in camel else "")
        required = "yes" if info.is_required() else ("unless `steps`" if name == "prompt" else "")
        default = "" if info.is_required() else info.get_default(call_default_factory=True)
        shown = "" if default in ("", None, (), {}) else f"`{json.dumps(default)}`"
        rows.append(f"| {label} | {required} | {shown} | {info.description} |")
    return "\n".join(rows)
