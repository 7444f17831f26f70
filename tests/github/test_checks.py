"""Checks before work, against the fake GitHub over HTTP: token, existence, access, key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from codybatch import checks
from codybatch.settings import Settings
from codybatch.spec import JobSpec, SpecError
from tests.fakes.github_server import FakeGitHub


def spec_of(settings: Settings, *repositories: str, **fields: object) -> JobSpec:
    data = {"name": "Checked", "steps": ["true"], "repositories": list(repositories), **fields}
    return JobSpec.parse(data, settings, user_input=True)


def errors_of(spec: JobSpec, settings: Settings) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        checks.checked(spec, settings)
    return [(e.field, e.message) for e in info.value.errors]


def test_github_repositories_need_a_token() -> None:
    settings = Settings()
    spec = spec_of(settings, "acme/billing", "acme/web")
    assert errors_of(spec, settings) == [
        (
            "repositories",
            "2 GitHub repositories but GITHUB_TOKEN is not set: set it to a token that can "
            "read them, or use local repositories",
        )
    ]


def test_each_repository_is_looked_up_once(fake_github: FakeGitHub, tmp_path: Path) -> None:
    settings = fake_github.settings(home=tmp_path)
    fake_github.create_repo("acme/api")
    fake_github.create_repo("acme/hidden", visible=False)
    fake_github.create_repo("acme/old", archived=True)
    before = len(fake_github.api_requests("GET"))
    spec = spec_of(settings, "acme/api", "acme/missing", "acme/hidden", "acme/old")
    errors = errors_of(spec, settings)
    assert [f for f, _ in errors] == ["repositories[1]", "repositories[2]", "repositories[3]"]
    assert "not found or not visible to the token" in errors[0][1]
    assert "check the name and the token's access" in errors[0][1]
    assert "archived" in errors[2][1]
    assert settings.github_token not in repr(errors)
    assert len(fake_github.api_requests("GET")) - before == 4  # one cheap call per repository


def test_no_push_access_is_a_note_not_a_failure(fake_github: FakeGitHub, tmp_path: Path) -> None:
    settings = fake_github.settings(home=tmp_path)
    fake_github.create_repo("acme/api", push=False)
    spec = spec_of(settings, "acme/api", create_pull_requests=True)
    assert checks.checked(spec, settings) == [
        "github.com/acme/api: the token cannot push, so no pull request will be opened there "
        "(its patch is kept)"
    ]


def test_a_rate_limit_is_waited_out(fake_github: FakeGitHub, tmp_path: Path) -> None:
    settings = dataclasses.replace(fake_github.settings(home=tmp_path), github_max_wait=0.05)
    fake_github.create_repo("acme/api")
    fake_github.primary_rate_limit("GET", r"/repos/acme/api$", times=1, reset_in=0)
    assert checks.checked(spec_of(settings, "acme/api"), settings) == []
    assert len(fake_github.api_requests("GET", r"/repos/acme/api$")) == 2  # waited, retried


def test_prompt_without_a_key_and_with_bedrock(tmp_path: Path) -> None:
    from tests.helpers import make_repo

    repo = make_repo(tmp_path / "examples" / "svc", {"a": "1"})
    settings = Settings(home=tmp_path)
    spec = spec_of(settings, str(repo), prompt="Rename foo", steps=[])
    [(field, message)] = errors_of(spec, settings)
    assert field == "prompt" and "ANTHROPIC_API_KEY is not set" in message
    with_key = dataclasses.replace(settings, anthropic_api_key="sk-x")
    assert checks.preflight(spec, with_key).errors == []  # the model check only warns here
    bedrock = dataclasses.replace(settings, claude_provider="bedrock")
    assert checks.preflight(spec, bedrock).errors == []
    steps_only = spec_of(settings, str(repo))
    assert checks.checked(steps_only, settings) == []  # no Claude, no key needed


def test_other_checks_plug_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.helpers import make_repo

    def no_fridays(spec: JobSpec, settings: Settings) -> checks.Findings:
        return checks.Findings(errors=[checks.FieldError("name", "not on a Friday")])

    monkeypatch.setattr(checks, "CHECKS", [*checks.CHECKS, no_fridays])
    repo = make_repo(tmp_path / "examples" / "svc", {"a": "1"})
    settings = Settings(home=tmp_path)
    assert errors_of(spec_of(settings, str(repo)), settings) == [("name", "not on a Friday")]
