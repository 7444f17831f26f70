"""codybatch.github against the fake GitHub: resolving, listing, retries, spacing."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest

from codybatch import github
from codybatch.github import (
    GitHubError,
    RemoteRepository,
    author_of_token,
    branch_name,
    list_repositories,
    pr_slot,
    resolve_repository,
)
from codybatch.settings import Settings
from codybatch.spec import parse_repository
from tests.fakes.github_server import FakeGitHub


def test_resolve_repository(fake_github: FakeGitHub, gh_settings: Settings) -> None:
    fake_github.create_repo("acme/api", default_branch="trunk")
    remote = resolve_repository(parse_repository("acme/api"), gh_settings)
    assert remote == RemoteRepository(
        full_name="acme/api",
        clone_url=f"{fake_github.url}/git/acme/api.git",
        default_branch="trunk",
        html_url=f"{fake_github.url}/acme/api",
        archived=False,
        can_push=True,
    )
    # The key the UI lists (host of the server) resolves the same way.
    host = fake_github.url.removeprefix("http://")
    assert resolve_repository(parse_repository(f"{host}/acme/api"), gh_settings) == remote


def test_resolve_reports_archived_and_missing_push_access(
    fake_github: FakeGitHub, gh_settings: Settings
) -> None:
    fake_github.create_repo("acme/old", archived=True)
    fake_github.create_repo("acme/ro", push=False)
    assert resolve_repository(parse_repository("acme/old"), gh_settings).archived is True
    assert resolve_repository(parse_repository("acme/ro"), gh_settings).can_push is False


@pytest.mark.parametrize("hidden", [False, True])
def test_resolve_missing_or_invisible(
    fake_github: FakeGitHub, gh_settings: Settings, hidden: bool
) -> None:
    fake_github.create_repo("acme/secret")
    if hidden:
        fake_github.hide("acme/secret")
    name = "acme/secret" if hidden else "acme/nope"
    with pytest.raises(GitHubError) as caught:
        resolve_repository(parse_repository(name), gh_settings)
    assert str(caught.value) == (
        f"repository github.com/{name} not found or not visible to the token"
    )


def test_resolve_with_a_bad_token_says_so_without_the_token(
    fake_github: FakeGitHub, gh_settings: Settings
) -> None:
    fake_github.create_repo("acme/api")
    bad = dataclasses.replace(gh_settings, github_token="ghp_not_the_right_one_123")
    with pytest.raises(GitHubError) as caught:
        resolve_repository(parse_repository("acme/api"), bad)
    assert "token was rejected" in str(caught.value)
    assert "ghp_not_the_right_one_123" not in str(caught.value)


def test_resolve_refuses_another_host_and_missing_token(gh_settings: Settings) -> None:
    with pytest.raises(GitHubError, match="not on the GitHub this token is for"):
        resolve_repository(parse_repository("ghe.example.com/acme/api"), gh_settings)
    with pytest.raises(GitHubError, match="GITHUB_TOKEN is not set"):
        resolve_repository(
            parse_repository("acme/api"), dataclasses.replace(gh_settings, github_token="")
        )


def test_server_errors_are_retried_a_bounded_number_of_times(
    fake_github: FakeGitHub, gh_settings: Settings
) -> None:
    fake_github.create_repo("acme/api")
    fake_github.server_error("GET", r"^/repos/acme/api$", status=500, times=3)
    assert resolve_repository(parse_repository("acme/api"), gh_settings).full_name == "acme/api"
    fake_github.server_error("GET", r"^/repos/acme/api$", status=502, times=100)
    before = len(fake_github.api_requests("GET", r"^/repos/acme/api$"))
    with pytest.raises(GitHubError, match="502"):
        resolve_repository(parse_repository("acme/api"), gh_settings)
    assert len(fake_github.api_requests("GET", r"^/repos/acme/api$")) - before == 1 + github.RETRIES


def test_list_repositories_paginates_and_applies_the_allowlist(
    fake_github: FakeGitHub, gh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("acme/api", "acme/web", "acme/docs", "other/tool", "other/lib"):
        fake_github.create_repo(name)
    fake_github.create_repo("acme/hidden").visible = False
    monkeypatch.setattr(github, "PER_PAGE", 2)
    host = fake_github.url.removeprefix("http://")
    assert list_repositories(gh_settings) == [
        f"{host}/acme/api",
        f"{host}/acme/docs",
        f"{host}/acme/web",
        f"{host}/other/lib",
        f"{host}/other/tool",
    ]
    pages = fake_github.api_requests("GET", r"^/user/repos$")
    assert len(pages) == 3
    allowed = dataclasses.replace(gh_settings, allowed_repositories=("*/acme/*",))
    assert list_repositories(allowed) == [f"{host}/acme/{n}" for n in ("api", "docs", "web")]
    # What it lists is what a job spec accepts and resolves.
    key = list_repositories(allowed)[0]
    assert resolve_repository(parse_repository(key), allowed).full_name == "acme/api"


def test_author_of_token(fake_github: FakeGitHub, gh_settings: Settings) -> None:
    host = fake_github.url.removeprefix("http://")
    user = fake_github.user
    assert author_of_token(gh_settings) == (
        f"Cody Batch Bot <{user.id}+{user.login}@users.noreply.{host}>"
    )


def test_public_api_hosts() -> None:
    assert github.web_host(Settings()) == "github.com"
    ghe = Settings(github_api_url="https://ghe.example.com/api/v3")
    assert github.web_host(ghe) == "ghe.example.com"


@pytest.mark.parametrize(
    ("name", "branch"),
    [
        ("Replace oldFunction", "codybatch/replace-oldfunction"),
        ("  Bump: deps (2024) / Q3!  ", "codybatch/bump-deps-2024-q3"),
        ("Ünïcode café", "codybatch/unicode-cafe"),
        ("x" * 200, "codybatch/" + "x" * 60),
    ],
)
def test_branch_name_is_a_stable_slug(name: str, branch: str) -> None:
    assert branch_name(name) == branch
    assert branch_name(name) == branch_name(name)


def test_branch_name_of_a_name_without_ascii_letters() -> None:
    branch = branch_name("日本語")
    assert branch.startswith("codybatch/job-") and branch == branch_name("日本語")
    assert branch != branch_name("中文")


def test_pr_slot_serialises_callers(gh_settings: Settings) -> None:
    events: list[str] = []

    def call(i: int) -> None:
        with pr_slot(gh_settings):
            events.append(f"in{i}")
            time.sleep(0.01)
            events.append(f"out{i}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(events) == 8
    for pos in range(0, 8, 2):  # every entry is directly followed by its own exit
        assert events[pos + 1] == events[pos].replace("in", "out")


def test_pr_slot_lock_file_does_not_hold_the_token(gh_settings: Settings) -> None:
    with pr_slot(gh_settings):
        pass
    files = list((gh_settings.home / "locks").glob("codybatch-github-*.lock"))
    assert len(files) == 1
    for path in files:
        assert gh_settings.github_token not in path.name + path.read_text()


def test_rate_limit_waits_are_logged_without_secrets(
    fake_github: FakeGitHub, gh_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fake_github.create_repo("acme/api")
    fake_github.secondary_rate_limit("GET", r"^/repos/acme/api$", retry_after=3)
    with caplog.at_level(logging.DEBUG):
        resolve_repository(parse_repository("acme/api"), gh_settings)
    assert "asked to wait 3 s" in caplog.text
    assert gh_settings.github_token not in caplog.text
