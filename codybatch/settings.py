"""Environment -> Settings: the one place that reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "claude-sonnet-5-5"
# Medium, not the API's default high: batch edits are well specified, and effort is what
# drives thinking and output tokens, the larger part of a session's cost.
DEFAULT_EFFORT = "medium"


def _first(env: Mapping[str, str], *names: str, default: str = "") -> str:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return default


def _patterns(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.replace("\n", ",").split(",") if p.strip())


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
        env = os.environ if env is None else env
        return cls(
            home=Path(_first(env, "CODYBATCH_HOME", default=".codybatch")).absolute(),
            store=_first(env, "CODYBATCH_STORE", default="local").lower(),
            runner=_first(env, "CODYBATCH_RUNNER", default="local").lower(),
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
            claude_provider=_first(env, "CODYBATCH_CLAUDE_PROVIDER", default="anthropic").lower(),
            anthropic_api_key=_first(env, "ANTHROPIC_API_KEY", "CLAUDE_API_KEY"),
            anthropic_base_url=_first(env, "ANTHROPIC_BASE_URL"),
            github_token=_first(env, "GITHUB_TOKEN"),
            github_api_url=_first(env, "GITHUB_API_URL", default="https://api.github.com"),
            github_pr_interval=float(_first(env, "CODYBATCH_GITHUB_PR_INTERVAL", default="1")),
            github_max_wait=float(_first(env, "CODYBATCH_GITHUB_MAX_WAIT", default="300")),
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
            batch_job_queue=_first(env, "CODYBATCH_BATCH_JOB_QUEUE", default="codybatch-queue"),
            batch_job_definition=_first(
                env, "CODYBATCH_BATCH_JOB_DEFINITION", default="codybatch-worker"
            ),
            batch_deferrable=_first(env, "CODYBATCH_BATCH_DEFERRABLE", default="true").lower()
            not in ("0", "false", "no", "off"),
            step_timeout=int(_first(env, "CODYBATCH_STEP_TIMEOUT", default="600")),
            pool=_first(env, "CODYBATCH_POOL", default="codybatch"),
            campaigns_dir=_first(env, "CODYBATCH_CAMPAIGNS_DIR"),
            tracking_schedule=_first(env, "CODYBATCH_TRACKING_SCHEDULE", default="@hourly"),
            step_env=_patterns(_first(env, "CODYBATCH_STEP_ENV")),
            sandbox=_first(env, "CODYBATCH_SANDBOX", default="auto").lower(),
            approval_timeout_hours=float(
                _first(env, "CODYBATCH_APPROVAL_TIMEOUT_HOURS", default="72")
            ),
            batch_job_id=_first(env, "AWS_BATCH_JOB_ID"),
        )
