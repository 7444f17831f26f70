"""The fake GitHub itself: what other tests rely on."""

from __future__ import annotations

from pathlib import Path

import github as pygithub
import pytest

from codybatch import git
from tests.fakes.github_server import FakeGitHub


def test_git_needs_the_token(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake_github.create_repo("acme/api", {"a.txt": "a\n"})
    url = fake_github.clone_url("acme/api")
    with pytest.raises(git.GitError):
        git.clone(url, tmp_path / "anonymous")
    with pytest.raises(git.GitError):
        git.clone(url, tmp_path / "wrong", token="ghp_wrong")
    git.clone(url, tmp_path / "ok", token=fake_github.token)
    assert (tmp_path / "ok" / "a.txt").read_text() == "a\n"


def test_push_permission_and_protection(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake_github.create_repo("acme/api")
    url, token = fake_github.clone_url("acme/api"), fake_github.token
    checkout = git.clone(url, tmp_path / "c", token=token)
    (checkout / "b.txt").write_text("b\n")
    git.commit_all(checkout, "b", "A <a@example.com>")
    git.push(checkout, url, "feature", token=token)
    assert fake_github.file_at("acme/api", "feature", "b.txt") == "b\n"
    fake_github.protect_branch("acme/api", "feature")
    (checkout / "c.txt").write_text("c\n")
    git.commit_all(checkout, "c", "A <a@example.com>")
    with pytest.raises(git.GitError, match="Protected branch update failed"):
        git.push(checkout, url, "feature", token=token)
    fake_github.set_push("acme/api", False)
    with pytest.raises(git.GitError):
        git.push(checkout, url, "other", token=token)
    assert fake_github.branches("acme/api") == ["feature", "main"]


def test_pulls_filters_and_validation(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake_github.create_repo("acme/api")
    fake_github.commit_files("acme/api", {"x": "1\n"}, branch="feature")
    gh = pygithub.Github(
        auth=pygithub.Auth.Token(fake_github.token),
        base_url=fake_github.api_url,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    repo = gh.get_repo("acme/api")
    pull = repo.create_pull(title="t", body="b", head="feature", base="main", draft=True)
    with pytest.raises(pygithub.GithubException) as caught:
        repo.create_pull(title="t", body="b", head="feature", base="main")
    assert caught.value.status == 422
    assert "already exists" in str(caught.value.data)
    with pytest.raises(pygithub.GithubException):
        repo.create_pull(title="t", body="b", head="missing", base="main")
    assert [p.number for p in repo.get_pulls(head="acme:feature")] == [pull.number]
    assert list(repo.get_pulls(head="acme:other")) == []
    fake_github.merge_pull("acme/api", pull.number)
    assert list(repo.get_pulls()) == []
    [merged] = repo.get_pulls(state="all")
    assert merged.merged_at is not None and merged.state == "closed"
    assert fake_github.file_at("acme/api", "main", "x") == "1\n"
    with pytest.raises(pygithub.GithubException):
        merged.edit(state="open")


def test_requests_are_recorded_with_the_user(fake_github: FakeGitHub) -> None:
    gh = pygithub.Github(auth=pygithub.Auth.Token(fake_github.token), base_url=fake_github.api_url)
    assert gh.get_user().login == "codybatch-bot"
    [request] = fake_github.api_requests("GET", r"^/user$")
    assert request.user == "codybatch-bot" and request.status == 200
    bad = pygithub.Github(auth=pygithub.Auth.Token("nope"), base_url=fake_github.api_url)
    with pytest.raises(pygithub.BadCredentialsException):
        _ = bad.get_user().login


def test_environment_points_at_the_fake(fake_github: FakeGitHub) -> None:
    import os

    from codybatch.settings import Settings

    settings = Settings.from_env()
    assert settings.github_token == fake_github.token == os.environ["GITHUB_TOKEN"]
    assert settings.github_api_url == fake_github.api_url


def test_check_runs_annotations_job_logs_and_comments_as_github_serves_them(
    fake_github: FakeGitHub,
) -> None:
    import requests

    fake_github.create_repo("acme/api", {"a.py": "x = 1\n"})
    sha = fake_github.branch_sha("acme/api", "main")
    run_id = fake_github.add_check_run(
        "acme/api",
        sha,
        "test",
        "completed",
        "failure",
        summary="1 test failed",
        annotations=[{"path": "a.py", "start_line": 1, "message": "assert 1 == 2"}],
        log="collected 3 items\nFAILED test_a.py::test_x\n",
    )
    gh = pygithub.Github(auth=pygithub.Auth.Token(fake_github.token), base_url=fake_github.api_url)
    repo = gh.get_repo("acme/api")
    [run] = list(repo.get_commit(sha).get_check_runs())
    assert (run.id, run.conclusion, run.output.summary) == (run_id, "failure", "1 test failed")
    assert run.app.slug == "github-actions"
    [note] = list(run.get_annotations())
    assert (note.path, note.start_line, note.message) == ("a.py", 1, "assert 1 == 2")
    answer = requests.get(
        f"{fake_github.api_url}/repos/acme/api/actions/jobs/{run_id}/logs",
        headers={"Authorization": f"token {fake_github.token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302
    log = requests.get(answer.headers["Location"], timeout=10)  # a signed URL: no token
    assert "FAILED test_a.py::test_x" in log.text
    assert fake_github.set_permission("acme/api", "alice", "write") is None
    assert repo.get_collaborator_permission("alice") == "write"
    assert repo.get_collaborator_permission(fake_github.user.login) == "write"


def test_auto_merge_mutation_refuses_what_github_refuses(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/api", {"a.py": "x = 1\n"})
    fake_github.commit_files("acme/api", {"a.py": "x = 2\n"}, branch="topic")
    gh = pygithub.Github(auth=pygithub.Auth.Token(fake_github.token), base_url=fake_github.api_url)
    pull = gh.get_repo("acme/api").create_pull(title="t", body="", head="topic", base="main")
    for setup, message in [
        (lambda: None, "Auto merge is not allowed for this repository"),
        (lambda: setattr(fake_github.repo("acme/api"), "allow_auto_merge", True), "Protected"),
        (lambda: fake_github.protect("acme/api", approvals=1, required_checks=[]), None),
    ]:
        setup()
        if message is None:
            pull.enable_automerge(merge_method="SQUASH")
            break
        with pytest.raises(pygithub.GithubException) as refused:
            pull.enable_automerge(merge_method="SQUASH")
        assert message in str(refused.value)
    assert fake_github.pull("acme/api", 1).auto_merge["merge_method"] == "squash"
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")
    assert gh.get_repo("acme/api").get_pull(1).merged  # GitHub merged it once approved
