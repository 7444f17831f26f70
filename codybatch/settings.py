"""Environment -> Settings: the one place that reads os.environ."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "claude-sonnet-5-5"
# Medium, not the API's default high: batch edits are well specified, and effort is what
# drives thinking and output tokens, the larger part of a session's cost.
DEFAULT_EFFORT = "medium"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """Environment variables with values Cody Batch cannot use: each named with its fix."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(
            "bad settings in the environment (fix these variables and start again):\n"
            + "\n".join(f"  - {e}" for e in errors)
        )


def _first(env: Mapping[str, str], *names: str, default: str = "") -> str:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return default


def _patterns(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.replace("\n", ",").split(",") if p.strip())


class _Reader:
    """Reads typed values, collecting every bad one (never a secret: only these are checked)."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.errors: list[str] = []

    def number(self, name: str, default: float, unit: str, positive: bool = False) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0):
            least = "above 0" if positive else "0 or more"
            self.errors.append(
                f"{name}={raw!r} is not a valid number of {unit}: set one {least} "
                f"(e.g. {name}={default:g}) or unset it for {default:g}"
            )
            return default
        return value

    def whole(self, name: str, default: int, unit: str) -> int:
        raw = self.env.get(name, "").strip()
        if raw and not raw.isdigit():
            self.errors.append(
                f"{name}={raw!r} is not a whole number of {unit}: set one above 0 "
                f"(e.g. {name}={default}) or unset it for {default}"
            )
            return default
        value = int(raw or default)
        if value <= 0:
            self.errors.append(f"{name}={raw!r} must be above 0 {unit}: unset it for {default}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw not in TRUE + FALSE:
            self.errors.append(
                f"{name}={raw!r} is not true or false: set true or false "
                f"(or unset it for {str(default).lower()})"
            )
            return default
        return raw in TRUE

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        raw = self.env.get(name, "").strip().lower()
        if raw and raw not in choices:
            self.errors.append(
                f"{name}={raw!r} is not known: set one of {', '.join(choices)} "
                f"(or unset it for {choices[0]})"
            )
        return raw if raw in choices else choices[0]


@dataclass(frozen=True)
class Settings:
    """Configuration of one process, read from the environment."""

    home: Path = Path(".codybatch")
    store: str = "local"
    runner: str = "local"
    allowed_repositories: tuple[str, ...] = ()
    # Without an allowlist, local repositories only under here (None: HOME/examples).
    local_root_dir: Path | None = None
    job_types_dir: str = ""  # job types besides include/job-types/
    model: str = DEFAULT_MODEL
    effort: str = DEFAULT_EFFORT
    prices: str = ""  # CODYBATCH_PRICES: per-model USD per million tokens (negotiated rates)
    claude_provider: str = "anthropic"
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_base_url: str = ""
    github_token: str = field(default="", repr=False)
    github_api_url: str = "https://api.github.com"
    github_pr_interval: float = 1.0  # seconds between PR-creating calls per token
    github_max_wait: float = 300.0  # longest wait for a GitHub rate limit before a retry
    git_author: str = ""
    public_url: str = ""
    jobs_table: str = "codybatch-jobs"
    repositories_table: str = "codybatch-repositories"
    bucket: str = "codybatch-results"
    aws_region: str = "us-east-1"
    aws_conn_id: str = "aws_default"  # where Airflow runs: the connection every AWS call uses
    batch_job_queue: str = "codybatch-queue"
    batch_job_definition: str = "codybatch-worker"
    batch_deferrable: bool = True  # BatchOperator waits in the triggerer (needs aiobotocore)
    step_timeout: int = 600
    pool: str = "codybatch"
    campaigns_dir: str = ""
    tracking_schedule: str = "@hourly"
    approval_timeout_hours: float = 72.0  # no answer by then: nothing is published
    step_env: tuple[str, ...] = ()  # extra variables steps and verify may see
    sandbox: str = "auto"  # auto: bubblewrap; container: the container is the boundary
    batch_job_id: str = ""  # set by AWS Batch in the worker's container

    @property
    def local_root(self) -> Path:
        """Where local repositories may be when no allowlist is set (the demo's examples)."""
        return (self.local_root_dir or self.home / "examples").absolute()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be written anywhere."""
        return tuple(s for s in (self.anthropic_api_key, self.github_token) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read once by each entry point (CLI, worker, Airflow task, the plugin) and passed
        down; raises SettingsError naming every bad variable at once."""
        env = os.environ if env is None else env
        read = _Reader(env)
        settings = cls(
            home=Path(_first(env, "CODYBATCH_HOME", default=".codybatch")).absolute(),
            store=read.choice("CODYBATCH_STORE", ("local", "aws")),
            runner=read.choice("CODYBATCH_RUNNER", ("local", "batch")),
            allowed_repositories=_patterns(
                _first(env, "CODYBATCH_ALLOWED_REPOSITORIES", "ALLOWED_REPOSITORIES")
            ),
            local_root_dir=Path(root).absolute()
            if (root := _first(env, "CODYBATCH_LOCAL_ROOT"))
            else None,
            job_types_dir=_first(env, "CODYBATCH_JOB_TYPES_DIR"),
            model=_first(env, "CODYBATCH_MODEL", default=DEFAULT_MODEL),
            effort=_first(env, "CODYBATCH_EFFORT", default=DEFAULT_EFFORT).lower(),
            prices=_first(env, "CODYBATCH_PRICES"),
            claude_provider=read.choice("CODYBATCH_CLAUDE_PROVIDER", ("anthropic", "bedrock")),
            anthropic_api_key=_first(env, "ANTHROPIC_API_KEY", "CLAUDE_API_KEY"),
            anthropic_base_url=_first(env, "ANTHROPIC_BASE_URL"),
            github_token=_first(env, "GITHUB_TOKEN"),
            github_api_url=_first(env, "GITHUB_API_URL", default="https://api.github.com"),
            github_pr_interval=read.number("CODYBATCH_GITHUB_PR_INTERVAL", 1.0, "seconds"),
            github_max_wait=read.number("CODYBATCH_GITHUB_MAX_WAIT", 300.0, "seconds"),
            git_author=_first(env, "CODYBATCH_GIT_AUTHOR"),
            public_url=_first(env, "CODYBATCH_PUBLIC_URL"),
            jobs_table=_first(
                env, "CODYBATCH_JOBS_TABLE", "DYNAMODB_JOBS_TABLE", default="codybatch-jobs"
            ),
            repositories_table=_first(
                env,
                "CODYBATCH_REPOSITORIES_TABLE",
                "DYNAMODB_REPOSITORIES_TABLE",
                default="codybatch-repositories",
            ),
            bucket=_first(env, "CODYBATCH_BUCKET", "S3_BUCKET", default="codybatch-results"),
            aws_region=_first(env, "AWS_REGION", "AWS_DEFAULT_REGION", default="us-east-1"),
            aws_conn_id=_first(env, "CODYBATCH_AWS_CONN_ID", default="aws_default"),
            batch_job_queue=_first(env, "CODYBATCH_BATCH_JOB_QUEUE", default="codybatch-queue"),
            batch_job_definition=_first(
                env, "CODYBATCH_BATCH_JOB_DEFINITION", default="codybatch-worker"
            ),
            batch_deferrable=read.flag("CODYBATCH_BATCH_DEFERRABLE", True),
            step_timeout=read.whole("CODYBATCH_STEP_TIMEOUT", 600, "seconds"),
            pool=_first(env, "CODYBATCH_POOL", default="codybatch"),
            campaigns_dir=_first(env, "CODYBATCH_CAMPAIGNS_DIR"),
            tracking_schedule=_first(env, "CODYBATCH_TRACKING_SCHEDULE", default="@hourly"),
            step_env=_patterns(_first(env, "CODYBATCH_STEP_ENV")),
            sandbox=_first(env, "CODYBATCH_SANDBOX", default="auto").lower(),
            approval_timeout_hours=read.number(
                "CODYBATCH_APPROVAL_TIMEOUT_HOURS", 72.0, "hours", positive=True
            ),
            batch_job_id=_first(env, "AWS_BATCH_JOB_ID"),
        )
        if read.errors:
            raise SettingsError(read.errors)
        return settings
