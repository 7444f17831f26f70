"""Settings: the one place that reads the environment; seed aliases; secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

from codybatch.settings import DEFAULT_MODEL, Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.store == "local" and s.runner == "local" and s.model == DEFAULT_MODEL
    assert s.allowed_repositories == () and s.secrets == ()
    assert s.home == Path(".codybatch").absolute()
    assert s.public_url == "" and s.tracking_schedule == "@hourly"


def test_seed_aliases_and_lists() -> None:
    s = Settings.from_env(
        {
            "CLAUDE_API_KEY": "sk-ant-seed",
            "ALLOWED_REPOSITORIES": "github.com/acme/*, /srv/repos/*\ngithub.com/other/x",
            "DYNAMODB_JOBS_TABLE": "jobs-t",
            "DYNAMODB_REPOSITORIES_TABLE": "repos-t",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "CODYBATCH_STEP_ENV": "NODE_OPTIONS,JAVA_HOME",
            "CODYBATCH_STORE": "AWS",
        }
    )
    assert s.anthropic_api_key == "sk-ant-seed"
    assert s.allowed_repositories == ("github.com/acme/*", "/srv/repos/*", "github.com/other/x")
    assert (s.jobs_table, s.repositories_table, s.aws_region) == ("jobs-t", "repos-t", "eu-west-1")
    assert s.step_env == ("NODE_OPTIONS", "JAVA_HOME")
    assert s.store == "aws"


def test_the_new_names_win_over_the_seed_aliases() -> None:
    s = Settings.from_env(
        {
            "ANTHROPIC_API_KEY": "new",
            "CLAUDE_API_KEY": "old",
            "CODYBATCH_ALLOWED_REPOSITORIES": "a/*",
            "ALLOWED_REPOSITORIES": "b/*",
        }
    )
    assert s.anthropic_api_key == "new" and s.allowed_repositories == ("a/*",)


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-ant-zzz", "GITHUB_TOKEN": "ghp_yyy"})
    assert set(s.secrets) == {"sk-ant-zzz", "ghp_yyy"}
    assert "sk-ant-zzz" not in repr(s) and "ghp_yyy" not in repr(s)
