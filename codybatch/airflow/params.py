"""Trigger-form params of a job DAG and the conf -> JobSpec input merge."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from codybatch.spec import ALIASES, MAX_PROMPT, MAX_REPOSITORIES

ADVANCED = "Advanced"


def job_params(defaults: dict[str, Any] | None = None) -> dict[str, Param]:
    """Params that render a good trigger form; `defaults` pre-fill them (campaigns)."""
    d = defaults or {}
    return {
        "name": Param(
            d.get("name", ""),
            type="string",
            title="Job name",
            description="What this change is, in a few words. Also names the PR branch "
            "(codybatch/<slug>), so re-running a name updates the same pull requests.",
            maxLength=100,
        ),
        "description": Param(
            d.get("description"),
            type=["null", "string"],
            title="Description",
            description="Why the change is made; goes into the pull request body.",
            format="multiline",
        ),
        "prompt": Param(
            d.get("prompt"),
            type=["null", "string"],
            title="Prompt for Claude",
            description="The change to make, as you would tell a colleague. Required unless "
            "shell steps are given (Advanced).",
            format="multiline",
            maxLength=MAX_PROMPT,
        ),
        "repositories": Param(
            d.get("repositories", []),
            type="array",
            items={"type": "string"},
            title="Repositories",
            description=f"One per line, 1 to {MAX_REPOSITORIES}: owner/name, "
            "HOST/owner/name (GitHub Enterprise) or an absolute path to a local git repository.",
        ),
        "create_pull_requests": Param(
            d.get("create_pull_requests", False),
            type="boolean",
            title="Open pull requests",
            description="Push a branch and open (or update) a draft pull request per changed "
            "repository. Off: patches only, publish later with `codybatch publish`.",
        ),
        "steps": Param(
            d.get("steps"),
            type=["null", "array"],
            items={"type": "string"},
            title="Shell steps",
            description="Commands run in each checkout before Claude, one per line.",
            section=ADVANCED,
        ),
        "verify": Param(
            d.get("verify"),
            type=["null", "string"],
            title="Verify command",
            description="A check run after the change (e.g. `make test`); on failure Claude "
            "gets the output and fixes, up to 3 rounds.",
            section=ADVANCED,
        ),
        "base_branch": Param(
            d.get("base_branch"),
            type=["null", "string"],
            title="Base branch",
            description="Branch to change; empty: the repository's default branch.",
            section=ADVANCED,
        ),
        "model": Param(
            d.get("model"),
            type=["null", "string"],
            title="Claude model",
            description="Empty: CODYBATCH_MODEL.",
            section=ADVANCED,
        ),
        "draft": Param(
            d.get("draft", True),
            type="boolean",
            title="Draft pull requests",
            section=ADVANCED,
        ),
        "max_turns": Param(
            d.get("max_turns"),
            type=["null", "integer"],
            title="Max turns per repository",
            description="Default 50.",
            section=ADVANCED,
        ),
        "max_usd": Param(
            d.get("max_usd"),
            type=["null", "number"],
            title="Max USD per repository",
            description="Default 2.",
            section=ADVANCED,
        ),
    }


def spec_input(params: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
    """Merge the validated params and the raw conf into JobSpec input (conf aliases win)."""
    data = {k: v for k, v in params.items() if v is not None and v != "" and v != []}
    for key, value in (conf or {}).items():
        if key in ALIASES:
            data.pop(ALIASES[key], None)
        data[key] = value
    # Empty optional fields from the form mean "not given".
    return {k: v for k, v in data.items() if v is not None and v != "" and v != []}
