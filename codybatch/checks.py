"""Checks before work: what a valid job still needs from this deployment (tokens, keys,
access), run by every entry point after the job model's parse and before anything is cloned.

Each check is a function (spec, settings) -> Findings; CHECKS lists them in order, so other
checks (e.g. the model's lifecycle) plug in by appending one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from codybatch.settings import Settings
from codybatch.spec import FieldError, JobSpec, SpecError, parse_repository


@dataclass
class Findings:
    """Errors refuse the job; notes are shown with it (per-repository warnings)."""

    errors: list[FieldError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.errors.extend(other.errors)
        self.notes.extend(other.notes)


Check = Callable[[JobSpec, Settings], Findings]


def _github_indexes(spec: JobSpec) -> list[tuple[int, str]]:
    return [
        (i, key) for i, key in enumerate(spec.repositories) if not parse_repository(key).is_local
    ]


def github_access(spec: JobSpec, settings: Settings) -> Findings:
    """GitHub repositories need GITHUB_TOKEN, and the token must see each one (one call each,
    through the rate-limit-aware client); no push access is a note when PRs are wanted."""
    found = Findings()
    remote = _github_indexes(spec)
    if not remote:
        return found
    if not settings.github_token:
        found.errors.append(
            FieldError(
                "repositories",
                f"{len(remote)} GitHub repositories but GITHUB_TOKEN is not set: set it to a "
                "token that can read them, or use local repositories",
            )
        )
        return found
    from codybatch.github import GitHubError, resolve_repository

    for i, key in remote:
        try:
            info = resolve_repository(parse_repository(key), settings)
        except GitHubError as exc:
            found.errors.append(
                FieldError(f"repositories[{i}]", f"{exc}: check the name and the token's access")
            )
            continue
        if spec.create_pull_requests and not info.can_push:
            found.notes.append(
                f"{key}: the token cannot push, so no pull request will be opened there "
                "(its patch is kept)"
            )
        if info.archived:
            found.errors.append(
                FieldError(
                    f"repositories[{i}]", f"{key} is archived (read-only): unarchive it or drop it"
                )
            )
    return found


def claude_credentials(spec: JobSpec, settings: Settings) -> Findings:
    """A job that runs Claude needs an Anthropic key, or Bedrock as the provider."""
    found = Findings()
    if not spec.task.strip():
        return found
    if settings.claude_provider == "bedrock" or settings.runner == "batch":
        # AWS credentials come from the environment or the instance role; on Batch the key
        # reaches only the containers (the model check warns about it).
        return found
    if settings.claude_provider != "anthropic":
        found.errors.append(
            FieldError(
                "prompt",
                f"CODYBATCH_CLAUDE_PROVIDER={settings.claude_provider!r} is not known: set it to "
                "anthropic or bedrock",
            )
        )
    elif not settings.anthropic_api_key:
        found.errors.append(
            FieldError(
                "prompt",
                "Claude is needed for the prompt but ANTHROPIC_API_KEY is not set: set it (or "
                "CODYBATCH_CLAUDE_PROVIDER=bedrock), or use shell steps only",
            )
        )
    return found


def model_facts(spec: JobSpec, settings: Settings) -> Findings:
    """The model's facts from the Models API (retired, unknown, deprecated) and the effort,
    once the credentials are there (claude_credentials reports their absence)."""
    if not spec.task.strip():
        return Findings()
    from codybatch.agent.client import credentials_problem
    from codybatch.agent.models import check_model  # the SDK only for jobs that call Claude

    if credentials_problem(settings) is not None and settings.runner != "batch":
        return Findings()
    check = check_model(spec, settings)
    return Findings(errors=list(check.errors), notes=list(check.warnings))


CHECKS: list[Check] = [github_access, claude_credentials, model_facts]


def preflight(spec: JobSpec, settings: Settings) -> Findings:
    """Run every check; the caller refuses the job when there are errors."""
    found = Findings()
    for check in CHECKS:
        found.extend(check(spec, settings))
    return found


def checked(spec: JobSpec, settings: Settings) -> list[str]:
    """Run the checks; raise SpecError with their errors, else return their notes."""
    found = preflight(spec, settings)
    if found.errors:
        raise SpecError(found.errors)
    return found.notes
