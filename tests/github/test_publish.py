"""publish_changes against the fake GitHub: open, update, close, never duplicate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from codybatch.github import branch_name
from codybatch.publish import CLOSED_MARKER, PublishError, publish_changes
from codybatch.records import Publishing, RepositoryResult
from codybatch.settings import Settings
from tests.fakes.github_server import FakeGitHub
from tests.github.conftest import NEW, OLD, PUBLIC_URL, ChangeFn, make_job, result_for

BRANCH = branch_name("Replace oldFunction")


def publish(
    change: ChangeFn,
    settings: Settings,
    full_name: str,
    files: dict[str, str | None],
    job_id: str = "job-0001",
    **result_kw: object,
) -> RepositoryResult:
    """One run's publishing step for one repository, as the worker does it."""
    job, spec = make_job(settings, [full_name], job_id=job_id)
    checkout, remote, patch = change(full_name, files)
    result = result_for(job, full_name, patch, **result_kw)
    publish_changes(checkout, remote, job, spec, result, settings)
    return result


def receive_packs(fake: FakeGitHub) -> int:
    return sum(1 for r in fake.git_requests() if r.path.endswith("/git-receive-pack"))


def test_first_run_opens_one_pr_per_changed_repository_and_none_for_the_unchanged(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    results = {
        "acme/api": publish(change, gh_settings, "acme/api", {"app.py": NEW}),
        "acme/web": publish(change, gh_settings, "acme/web", {"web.py": NEW}),
        "acme/docs": publish(change, gh_settings, "acme/docs", {}),
    }
    for name in ("acme/api", "acme/web"):
        [pull] = fake_github.pulls(name)
        result = results[name]
        assert result.publishing.action == "opened"
        assert (result.pr_number, result.pr_state) == (pull.number, "open")
        assert result.pr_url == f"{fake_github.url}/{name}/pull/{pull.number}"
        assert pull.draft is True
        assert (pull.head_ref, pull.base_ref) == (BRANCH, "main")
        assert pull.title == "Replace oldFunction"
        assert fake_github.commit_count(name, "main", BRANCH) == 1
    assert fake_github.file_at("acme/api", BRANCH, "app.py") == NEW
    assert fake_github.file_at("acme/api", "main", "app.py") == OLD
    assert fake_github.pulls("acme/docs") == []
    assert BRANCH not in fake_github.branches("acme/docs")
    assert results["acme/docs"].publishing.action == "none"
    assert results["acme/docs"].pr_url is None


def test_pull_request_text_and_commit(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    publish(
        change,
        gh_settings,
        "acme/api",
        {"app.py": NEW},
        summary="Replaced the call in app.py.",
        pr_title="Use newFunction in app.py",
    )
    [pull] = fake_github.pulls("acme/api")
    assert pull.title == "Use newFunction in app.py"
    assert "oldFunction is deprecated: use newFunction." in pull.body
    assert "> Replace every call of oldFunction with newFunction." in pull.body
    assert "Replaced the call in app.py." in pull.body
    assert f"{PUBLIC_URL}/codybatch/jobs/job-0001" in pull.body
    bare = fake_github.repo("acme/api").bare
    from tests.fakes.github_server import git

    log = git("log", "-1", "--format=%an <%ae>%n%s%n%b", BRANCH, cwd=bare)
    user = fake_github.user
    assert log.splitlines()[0] == (
        f"Cody Batch Bot <{user.id}+{user.login}@users.noreply.{fake_github.url[7:]}>"
    )
    assert log.splitlines()[1] == "Use newFunction in app.py"
    assert "Replaced the call in app.py." in log


def test_git_author_setting_and_ready_pull_request(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    settings = Settings(**{**gh_settings.__dict__, "git_author": "Bot <bot@example.com>"})
    job, spec = make_job(settings, ["acme/api"], draft=False)
    checkout, remote, patch = change("acme/api", {"app.py": NEW})
    publish_changes(checkout, remote, job, spec, result_for(job, "acme/api", patch), settings)
    [pull] = fake_github.pulls("acme/api")
    assert pull.draft is False
    from tests.fakes.github_server import git

    author = git("log", "-1", "--format=%an <%ae>", BRANCH, cwd=fake_github.repo("acme/api").bare)
    assert author == "Bot <bot@example.com>"


def test_second_run_updates_the_same_pull_request(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    second = publish(
        change,
        gh_settings,
        "acme/api",
        {"app.py": NEW, "CHANGELOG.md": "- newFunction\n"},
        job_id="job-0002",
        pr_title="Use newFunction (and note it)",
    )
    [pull] = fake_github.pulls("acme/api")
    assert second.publishing.action == "updated"
    assert second.pr_number == first.pr_number == pull.number
    assert pull.title == "Use newFunction (and note it)"
    assert f"{PUBLIC_URL}/codybatch/jobs/job-0002" in pull.body
    assert fake_github.file_at("acme/api", BRANCH, "CHANGELOG.md") == "- newFunction\n"
    assert fake_github.commit_count("acme/api", "main", BRANCH) == 1  # force-pushed, not stacked
    assert len(fake_github.api_requests("POST", r"/pulls$")) == 1


def test_identical_rerun_skips_the_push(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    publish(change, gh_settings, "acme/api", {"app.py": NEW})
    sha = fake_github.branch_sha("acme/api", BRANCH)
    pushes = receive_packs(fake_github)
    again = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert again.publishing.action == "unchanged"
    assert receive_packs(fake_github) == pushes
    assert fake_github.branch_sha("acme/api", BRANCH) == sha
    assert len(fake_github.pulls("acme/api")) == 1
    # The base moved: the same diff is pushed again, onto the new base.
    fake_github.commit_files("acme/api", {"other.txt": "x\n"})
    moved = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert moved.publishing.action == "updated"
    assert fake_github.branch_sha("acme/api", BRANCH) != sha
    assert fake_github.commit_count("acme/api", "main", BRANCH) == 1


def test_no_change_rerun_closes_the_pull_request_and_a_later_change_opens_a_new_one(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    second = publish(change, gh_settings, "acme/api", {}, job_id="job-0002")
    [pull] = fake_github.pulls("acme/api")
    assert pull.state == "closed" and not pull.merged
    assert second.publishing.action == "closed"
    assert (second.pr_number, second.pr_state) == (first.pr_number, "closed")
    [comment] = pull.comments
    assert "no changes necessary" in comment["body"]
    assert "job-0002" in comment["body"]
    assert CLOSED_MARKER in pull.body
    # Closing again finds nothing open: nothing happens.
    third = publish(change, gh_settings, "acme/api", {}, job_id="job-0003")
    assert third.publishing.action == "none"
    assert len(pull.comments) == 1
    # Changes are needed again: the PR we closed is not reopened; a new one is opened.
    fourth = publish(change, gh_settings, "acme/api", {"app.py": NEW}, job_id="job-0004")
    old, new = fake_github.pulls("acme/api")
    assert fourth.publishing.action == "opened"
    assert (old.state, new.state, fourth.pr_number) == ("closed", "open", new.number)
    assert not [
        r for r in fake_github.api_requests("PATCH") if (r.json() or {}).get("state") == "open"
    ]


@pytest.mark.parametrize("how", ["merged", "closed"])
def test_pull_request_merged_or_closed_by_a_person_is_never_reopened(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    repos: list[str],
    change: ChangeFn,
    how: str,
) -> None:
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    if how == "merged":
        fake_github.merge_pull("acme/api", first.pr_number, update_base=False)
    else:
        fake_github.close_pull("acme/api", first.pr_number)
    sha = fake_github.branch_sha("acme/api", BRANCH)
    pushes, writes = receive_packs(fake_github), len(fake_github.api_requests("PATCH"))
    again = publish(
        change, gh_settings, "acme/api", {"app.py": NEW, "x.py": "y\n"}, job_id="job-0002"
    )
    assert again.publishing.action == f"left_alone_{how}"
    assert (again.pr_number, again.pr_state) == (first.pr_number, how)
    assert "not reopened" in again.publishing.reason
    assert receive_packs(fake_github) == pushes
    assert fake_github.branch_sha("acme/api", BRANCH) == sha
    assert len(fake_github.api_requests("PATCH")) == writes
    assert len(fake_github.api_requests("POST", r"/pulls$")) == 1
    assert [p.state for p in fake_github.pulls("acme/api")] == ["closed"]


def test_merged_change_then_no_change_is_recorded(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    fake_github.merge_pull("acme/api", first.pr_number)  # main now holds the change
    again = publish(change, gh_settings, "acme/api", {}, job_id="job-0002")
    assert again.publishing.action == "left_alone_merged"
    assert again.pr_state == "merged"
    assert fake_github.pull("acme/api", first.pr_number).comments == []


def test_rejected_push_raises_publish_error_and_opens_nothing(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    fake_github.protect_branch("acme/api", BRANCH)
    with pytest.raises(PublishError) as caught:
        publish(change, gh_settings, "acme/api", {"app.py": NEW})
    message = str(caught.value)
    assert "rejected" in message and BRANCH in message
    assert "Protected branch update failed" in message
    assert gh_settings.github_token not in message
    assert fake_github.pulls("acme/api") == []
    assert BRANCH not in fake_github.branches("acme/api")


def test_no_push_access_records_patch_only(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    fake_github.set_push("acme/api", False)
    result = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert result.publishing == Publishing(
        action="patch_only", reason="no push access: patch only", branch=BRANCH
    )
    assert result.pr_url is None
    assert fake_github.api_requests(route=r"/pulls") == []
    assert receive_packs(fake_github) == 0


def test_secondary_rate_limit_then_success(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    repos: list[str],
    change: ChangeFn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_github.secondary_rate_limit("POST", r"/pulls$", times=2, retry_after=7)
    with caplog.at_level(logging.INFO, logger="codybatch.github"):
        result = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert result.publishing.action == "opened"
    assert [r.status for r in fake_github.api_requests("POST", r"/pulls$")] == [403, 403, 201]
    assert len(fake_github.pulls("acme/api")) == 1
    assert caplog.text.count("GitHub answered 403: asked to wait 7 s") == 2


def test_secondary_rate_limit_without_retry_after_waits_and_succeeds(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    repos: list[str],
    change: ChangeFn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_github.secondary_rate_limit("POST", r"/pulls$", retry_after=None)
    settings = Settings(**{**gh_settings.__dict__, "github_max_wait": 0.05})
    job, spec = make_job(settings, ["acme/api"])
    checkout, remote, patch = change("acme/api", {"app.py": NEW})
    result = result_for(job, "acme/api", patch)
    with caplog.at_level(logging.INFO, logger="codybatch.github"):
        publish_changes(checkout, remote, job, spec, result, settings)
    assert result.publishing.action == "opened"
    assert "asked to wait 60 s, waiting 0.05 s" in caplog.text


@pytest.mark.parametrize("status", [403, 429])
def test_primary_rate_limit_waits_for_the_reset(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    repos: list[str],
    change: ChangeFn,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    fake_github.primary_rate_limit("GET", r"/pulls$", reset_in=40, status=status)
    with caplog.at_level(logging.INFO, logger="codybatch.github"):
        result = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert result.publishing.action == "opened"
    waits = [
        float(r.getMessage().split("asked to wait ")[1].split(" s")[0])
        for r in caplog.records
        if "asked to wait" in r.getMessage()
    ]
    assert len(waits) == 1 and 38 <= waits[0] <= 42


def test_server_errors_are_retried_then_give_a_readable_error(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    fake_github.server_error("POST", r"/pulls$", status=502, times=2)
    result = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    assert result.publishing.action == "opened"
    assert [r.status for r in fake_github.api_requests("POST", r"/pulls$")] == [502, 502, 201]

    fake_github.server_error("POST", r"/pulls$", status=503, times=100)
    with pytest.raises(PublishError, match="503 Server Error"):
        publish(change, gh_settings, "acme/web", {"web.py": NEW})
    assert len(fake_github.api_requests("POST", r"/repos/acme/web/pulls$")) == 6  # 1 + 5 retries


def test_create_answered_already_exists_updates_the_existing_pull_request(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    """A create retried after GitHub did create the PR (5xx on the way back) must not fail."""
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    # The next listing misses the PR (as if created meanwhile by the retried request).
    fake_github.fail("GET", r"/pulls$", 200, body=[])
    again = publish(change, gh_settings, "acme/api", {"app.py": NEW, "b.py": "b\n"}, job_id="j2")
    assert again.pr_number == first.pr_number
    assert again.publishing.action == "updated"
    assert len(fake_github.pulls("acme/api")) == 1


def test_token_never_in_git_config_logs_or_urls(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    repos: list[str],
    change: ChangeFn,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    token = gh_settings.github_token
    with caplog.at_level(logging.DEBUG):
        publish(change, gh_settings, "acme/api", {"app.py": NEW})
        publish(change, gh_settings, "acme/api", {"app.py": NEW, "c": "c\n"}, job_id="job-2")
        publish(change, gh_settings, "acme/api", {}, job_id="job-3")
    assert caplog.records  # PyGithub and urllib3 did log at DEBUG
    assert token not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file() and ".git" in path.parts:
            assert token.encode() not in path.read_bytes(), path
    assert all(token not in r.path for r in fake_github.requests)
    pushes = [r for r in fake_github.git_requests() if "receive-pack" in r.path]
    assert pushes and all(r.user == fake_github.user.login for r in pushes)
    for pull in fake_github.pulls("acme/api"):
        assert token not in (pull.body or "") + pull.title


def test_a_result_without_a_recorded_diff_is_not_published(
    fake_github: FakeGitHub, gh_settings: Settings, repos: list[str], change: ChangeFn
) -> None:
    first = publish(change, gh_settings, "acme/api", {"app.py": NEW})
    job, spec = make_job(gh_settings, ["acme/api"], job_id="job-0002")
    checkout, remote, _ = change("acme/api", {})
    result = result_for(job, "acme/api", b"")
    result.were_changes_necessary = None
    with pytest.raises(PublishError, match="not recorded"):
        publish_changes(checkout, remote, job, spec, result, gh_settings)
    assert fake_github.pull("acme/api", first.pr_number).state == "open"  # not closed by mistake
