"""JobSpec: the one validated description of a job."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from codybatch.settings import Settings

MAX_REPOSITORIES = 5
MAX_PROMPT = 20_000
MAX_NAME = 100
MAX_DESCRIPTION = 5_000
MAX_STEPS = 20
MAX_COMMAND = 4_000

ALIASES = {
    "createPullRequests": "create_pull_requests",
    "baseBranch": "base_branch",
    "maxTurns": "max_turns",
    "maxUsd": "max_usd",
    "maxTokens": "max_tokens",
    "maxMinutes": "max_minutes",
    "commandTimeout": "command_timeout",
    "allowedCommands": "allowed_commands",
    "reviewBeforePublish": "review_before_publish",
    "maxFixRounds": "max_fix_rounds",
    "mergeMethod": "merge_method",
}
LIMIT_FIELDS = {
    "max_turns": (int, 1, 500, 50),
    "max_tokens": (int, 1_000, 50_000_000, 5_000_000),
    "max_usd": (float, 0.01, 500.0, 2.0),
    "max_minutes": (float, 1.0, 24 * 60.0, 30.0),
    "command_timeout": (int, 1, 3_600, 120),
    "max_fix_rounds": (int, 0, 10, 2),
}
EFFORTS = ("low", "medium", "high", "xhigh", "max")
MERGE_MODES = ("off", "auto", "when_green")
MERGE_METHODS = ("merge", "squash", "rebase")
MAX_ALLOWED_COMMANDS = 50
KNOWN = {
    "name",
    "description",
    "prompt",
    "repositories",
    "create_pull_requests",
    "steps",
    "base_branch",
    "verify",
    "model",
    "draft",
    "campaign",
    "effort",
    "shell",
    "network",
    "allowed_commands",
    "type",
    "variables",
    "review_before_publish",
    "merge",
    "merge_method",
    *LIMIT_FIELDS,
}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_HOST = re.compile(r"^[a-z0-9.-]+(:\d+)?$")
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\]+(?<![/.])$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def _normalise_pattern(pattern: str) -> str:
    pattern = pattern.strip()
    if pattern.startswith("file://"):
        return urlparse(pattern).path
    return pattern if pattern.startswith("/") else pattern.lower()


@dataclass(frozen=True)
class JobSpec:
    """A validated job: prompt and/or steps applied to 1-5 repositories."""

    name: str
    repositories: tuple[str, ...]
    prompt: str = ""
    description: str = ""
    create_pull_requests: bool = False
    steps: tuple[str, ...] = ()
    base_branch: str | None = None
    verify: str | None = None
    model: str | None = None
    draft: bool = True
    campaign: str | None = None  # set by a campaign's DAG: its name
    max_turns: int = 50
    max_tokens: int = 5_000_000
    max_usd: float = 2.0
    max_minutes: float = 30.0
    effort: str | None = None  # None: CODYBATCH_EFFORT, sent only where the model supports it
    shell: bool | None = None  # None: offered where the sandbox works
    network: bool = False  # commands run for Claude, steps and verify may reach the network
    command_timeout: int = 120  # seconds per command Claude runs
    allowed_commands: tuple[str, ...] = ()  # command-prefix patterns; empty: any command
    type: str = "custom"  # the job type whose template and defaults apply
    variables: Mapping[str, str] = field(default_factory=dict)  # the job type's variables
    review_before_publish: bool = False  # patch-only, then publish what a person approves
    merge: str = "off"  # off | auto | when_green
    merge_method: str = "squash"  # merge | squash | rebase
    max_fix_rounds: int = 2  # follow-up rounds per pull request

    def repository(self, key: str) -> Repository:
        """The parsed repository of this job with that key (or raw reference)."""
        wanted = parse_repository(key).key
        for raw in self.repositories:
            if raw == wanted:
                return parse_repository(raw)
        raise KeyError(f"{key!r} is not a repository of job {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["repositories"] = list(self.repositories)
        data["steps"] = list(self.steps)
        data["allowed_commands"] = list(self.allowed_commands)
        data["variables"] = dict(self.variables)
        return data

    @classmethod
    def parse(
        cls, data: Mapping[str, Any], settings: Settings | None = None, check_local: bool = True
    ) -> JobSpec:
        """Validate raw input (trigger conf, YAML, API body); raise SpecError with every error.

        `check_local=False` skips checking that local repositories exist (a worker checks
        only its own, by cloning it)."""
        settings = settings or Settings.from_env()
        if not isinstance(data, Mapping):
            raise SpecError([FieldError("spec", "must be an object of fields (name, prompt, ...)")])
        errors: list[FieldError] = []
        raw: dict[str, Any] = {}
        for key, value in data.items():
            target = ALIASES.get(key, key)
            if target in raw and value != raw[target]:
                errors.append(FieldError(key, f"given twice (as {target!r} too): keep one"))
            raw[target] = value
        for key in sorted(set(raw) - KNOWN):
            errors.append(
                FieldError(key, f"is not a known field: use one of {', '.join(sorted(KNOWN))}")
            )

        name = _text(raw, "name", errors, required=True, max_len=MAX_NAME)
        if name and (_CONTROL.search(name) or not re.search(r"[A-Za-z0-9]", name)):
            errors.append(FieldError("name", "must be one line with at least one letter or digit"))
        description = _text(raw, "description", errors, max_len=MAX_DESCRIPTION)
        prompt = _text(raw, "prompt", errors, max_len=MAX_PROMPT)
        steps = _commands(raw.get("steps"), errors)
        if not (prompt or "").strip() and not steps:
            errors.append(
                FieldError("prompt", "is required unless steps are given: say what to change")
            )
        verify = _text(raw, "verify", errors, max_len=MAX_COMMAND) or None
        model = _text(raw, "model", errors, max_len=100) or None
        campaign = _text(raw, "campaign", errors, max_len=100) or None
        base_branch = _text(raw, "base_branch", errors, max_len=255) or None
        if base_branch and not _BRANCH.match(base_branch):
            errors.append(
                FieldError("base_branch", f"{base_branch!r} is not a valid git branch name")
            )
        create_prs = _bool(raw, "create_pull_requests", errors, default=False)
        draft = _bool(raw, "draft", errors, default=True)
        repositories = _repositories(
            raw.get("repositories"), settings, errors, create_prs, check_local
        )
        limits = {name: _limit(raw, name, errors) for name in LIMIT_FIELDS}
        effort = _choice(raw, "effort", EFFORTS, errors, default=None)
        merge = _choice(raw, "merge", MERGE_MODES, errors, default="off")
        merge_method = _choice(raw, "merge_method", MERGE_METHODS, errors, default="squash")
        shell = None if raw.get("shell") is None else _bool(raw, "shell", errors, default=True)
        network = _bool(raw, "network", errors, default=False)
        review = _bool(raw, "review_before_publish", errors, default=False)
        if review and not create_prs:
            errors.append(
                FieldError(
                    "review_before_publish",
                    "needs create_pull_requests: true (approval decides what is published)",
                )
            )
        allowed_commands = _allowed_commands(raw.get("allowed_commands"), errors)
        job_type = _text(raw, "type", errors, max_len=100) or "custom"
        variables = _variables(raw.get("variables"), errors)
        if errors:
            raise SpecError(errors)
        return cls(
            name=name.strip(),
            repositories=tuple(repositories),
            prompt=prompt or "",
            description=description or "",
            create_pull_requests=create_prs,
            steps=tuple(steps),
            base_branch=base_branch,
            verify=verify,
            model=model,
            draft=draft,
            campaign=campaign,
            effort=effort,
            shell=shell,
            network=network,
            allowed_commands=tuple(allowed_commands),
            type=job_type,
            variables=variables,
            review_before_publish=review,
            merge=merge or "off",
            merge_method=merge_method or "squash",
            **limits,
        )


def _text(
    raw: Mapping[str, Any],
    name: str,
    errors: list[FieldError],
    *,
    required: bool = False,
    max_len: int,
) -> str:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            errors.append(FieldError(name, "is required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(name, f"must be a string, not {type(value).__name__}"))
        return ""
    if required and not value.strip():
        errors.append(FieldError(name, "is required: it is blank"))
    if len(value) > max_len:
        errors.append(
            FieldError(name, f"is {len(value):,} characters: shorten it to at most {max_len:,}")
        )
    return value


def _bool(raw: Mapping[str, Any], name: str, errors: list[FieldError], *, default: bool) -> bool:
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    errors.append(FieldError(name, f"must be true or false, not {value!r}"))
    return default


def _choice(
    raw: Mapping[str, Any],
    name: str,
    choices: Sequence[str],
    errors: list[FieldError],
    *,
    default: str | None,
) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        errors.append(FieldError(name, f"is {value!r}: choose one of {', '.join(choices)}"))
        return default
    return value


def _allowed_commands(value: Any, errors: list[FieldError]) -> list[str]:
    if value is None or value == []:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        errors.append(
            FieldError("allowed_commands", "must be a list of command prefixes, e.g. 'npm test'")
        )
        return []
    if len(value) > MAX_ALLOWED_COMMANDS:
        errors.append(FieldError("allowed_commands", f"has {len(value)} patterns: at most 50"))
    return [v.strip() for v in value]


def _variables(value: Any, errors: list[FieldError]) -> dict[str, str]:
    if value is None or value == {}:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        errors.append(FieldError("variables", "must be an object of names to text values"))
        return {}
    return dict(value)


def _limit(raw: Mapping[str, Any], name: str, errors: list[FieldError]) -> int | float:
    kind, low, high, default = LIMIT_FIELDS[name]
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(FieldError(name, f"must be a number between {low} and {high}"))
        return default
    if kind is int and value != int(value):
        errors.append(FieldError(name, "must be a whole number"))
        return default
    if not low <= value <= high:
        errors.append(FieldError(name, f"is {value}: choose a value between {low} and {high}"))
        return default
    return kind(value)


def _commands(value: Any, errors: list[FieldError]) -> list[str]:
    if value is None or value == []:
        return []
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list):
        errors.append(FieldError("steps", "must be a list of shell commands"))
        return []
    if len(value) > MAX_STEPS:
        errors.append(FieldError("steps", f"has {len(value)} commands: at most {MAX_STEPS}"))
    commands = []
    for i, command in enumerate(value):
        if not isinstance(command, str) or not command.strip():
            errors.append(FieldError(f"steps[{i}]", "must be a non-empty shell command"))
        elif len(command) > MAX_COMMAND:
            errors.append(FieldError(f"steps[{i}]", f"is longer than {MAX_COMMAND} characters"))
        else:
            commands.append(command)
    return commands


def _repositories(
    value: Any, settings: Settings, errors: list[FieldError], create_prs: bool, check_local: bool
) -> list[str]:
    if isinstance(value, str):
        value = [line for line in re.split(r"[\n,]", value) if line.strip()]
    if value is None or value == []:
        errors.append(
            FieldError("repositories", "is required: list 1 to 5 repositories (owner/name)")
        )
        return []
    if not isinstance(value, list):
        errors.append(FieldError("repositories", "must be a list of repositories (owner/name)"))
        return []
    if len(value) > MAX_REPOSITORIES:
        errors.append(
            FieldError(
                "repositories",
                f"has {len(value)} repositories: at most {MAX_REPOSITORIES} per job; "
                "split the work into several jobs",
            )
        )
    keys: list[str] = []
    for i, item in enumerate(value):
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
        if not is_allowed(repo, settings.allowed_repositories):
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
    return keys
