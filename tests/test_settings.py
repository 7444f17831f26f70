"""Settings: the one place that reads the environment; seed aliases; secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.settings import DEFAULT_MODEL, Settings, SettingsError


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


BAD = {
    "CODYBATCH_STEP_TIMEOUT": "abc",
    "CODYBATCH_GITHUB_MAX_WAIT": "-5",
    "CODYBATCH_GITHUB_PR_INTERVAL": "nan",
    "CODYBATCH_APPROVAL_TIMEOUT_HOURS": "0",
    "CODYBATCH_BATCH_DEFERRABLE": "maybe",
    "CODYBATCH_STORE": "s3",
    "CODYBATCH_RUNNER": "kubernetes",
    "CODYBATCH_CLAUDE_PROVIDER": "vertex",
    "GITHUB_TOKEN": "ghp_secret_value",
    "ANTHROPIC_API_KEY": "sk-ant-secret-value",
}


def test_every_bad_value_is_named_at_once_with_its_fix() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(BAD)
    errors = info.value.errors
    named = [e.split("=", 1)[0] for e in errors]
    assert sorted(named) == sorted(k for k in BAD if k.startswith("CODYBATCH_"))
    text = str(info.value)
    assert "CODYBATCH_STEP_TIMEOUT='abc' is not a whole number of seconds" in text
    assert (
        "CODYBATCH_GITHUB_MAX_WAIT='-5' is not a valid number of seconds: set one 0 or more" in text
    )
    assert "CODYBATCH_APPROVAL_TIMEOUT_HOURS='0'" in text and "above 0" in text
    assert "CODYBATCH_STORE='s3' is not known: set one of local, aws" in text
    assert "CODYBATCH_BATCH_DEFERRABLE='maybe' is not true or false" in text
    assert all("unset it for" in e for e in errors)  # each says how to fix it
    assert "secret" not in text  # secrets are never echoed


def test_good_values_parse() -> None:
    s = Settings.from_env(
        {
            "CODYBATCH_STEP_TIMEOUT": " 90 ",
            "CODYBATCH_GITHUB_MAX_WAIT": "2.5",
            "CODYBATCH_GITHUB_PR_INTERVAL": "0",
            "CODYBATCH_BATCH_DEFERRABLE": "Off",
            "CODYBATCH_RUNNER": "Batch",
        }
    )
    assert (s.step_timeout, s.github_max_wait, s.github_pr_interval) == (90, 2.5, 0.0)
    assert s.batch_deferrable is False and s.runner == "batch"


def test_the_cli_says_what_to_fix_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from codybatch.cli import main

    monkeypatch.setenv("CODYBATCH_STEP_TIMEOUT", "-1")
    monkeypatch.setenv("CODYBATCH_STORE", "mongo")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_never_printed")
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "CODYBATCH_STEP_TIMEOUT='-1'" in err and "CODYBATCH_STORE='mongo'" in err
    assert "Traceback" not in err and "ghp_never_printed" not in err


def test_only_entry_points_read_the_environment() -> None:
    """The core takes Settings from its caller; only the commands read them (the Airflow
    layer's tasks, DAG files and plugin routes are its entry points)."""
    root = Path(__file__).resolve().parents[1] / "codybatch"
    readers = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "from_env(" in path.read_text() and path.parts[len(root.parts)] != "airflow"
    }
    assert readers == {"settings.py", "cli.py", "demo.py"}
