"""Merge when green against the fake GitHub: the rule, auto-merge, refusals with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch import cli
from codybatch.github import branch_name
from codybatch.records import MergePart
from codybatch.settings import Settings
from codybatch.spec import parse_repository
from codybatch.store.local import LocalStore
from codybatch.sweep import track_pull_requests
from tests.fakes.github_server import FakeGitHub
from tests.github.conftest import NEW, SPEC
from tests.github.test_worker_publish import run_job

BRANCH = branch_name(SPEC["name"])
API = parse_repository("acme/api").key


@pytest.fixture
def store(gh_settings: Settings) -> LocalStore:
    return LocalStore(gh_settings.home)


def open_pr(
    fake: FakeGitHub, settings: Settings, store: LocalStore, job_id: str = "job-m", **fields: object
) -> str:
    """acme/api (protected: ci/test required) with one Cody Batch PR; returns its head sha."""
    fake.create_repo("acme/api", {"app.py": "from lib import oldFunction\n\noldFunction(1)\n"})
    fake.protect("acme/api", required_checks=["ci/test"], approvals=1)
    results = run_job(settings, store, ["acme/api"], job_id, draft=False, **fields)
    assert results["acme/api"].pr_number == 1
    return fake.branch_sha("acme/api", BRANCH) or ""


def stored_merge(store: LocalStore, job_id: str = "job-m"):
    result = store.get_result(job_id, API)
    assert result is not None
    return result, (result.merge or MergePart())


def test_no_merge_while_a_required_check_fails_then_merged_when_green(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore
) -> None:
    head = open_pr(fake_github, gh_settings, store, merge="when_green", merge_method="squash")
    fake_github.repo("acme/api").delete_branch_on_merge = True
    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "failure")
    fake_github.add_check_run("acme/api", head, "lint", "completed", "success")
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")

    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge == "refused: required check ci/test failed"
    assert fake_github.pull("acme/api", 1).state == "open"
    assert fake_github.api_requests("PUT", r"/merge$") == []  # never even asked GitHub
    result, part = stored_merge(store)
    assert (part.mode, part.state, result.pr_state) == ("when_green", "refused", "open")

    fake_github.add_check_run("acme/api", head, "ci/test", "in_progress", None)
    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge == "refused: required check ci/test has not passed yet"

    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "success")
    [tracked] = track_pull_requests(store, gh_settings)
    assert (
        tracked.merge.startswith("merged: squash: every required check passed")
        and tracked.after == "merged"
    )
    pull = fake_github.pull("acme/api", 1)
    assert pull.merged and pull.merged_by == fake_github.user.login
    assert fake_github.file_at("acme/api", "main", "app.py") == NEW
    assert fake_github.commit_count("acme/api", f"{pull.merge_commit_sha}~1", "main") == 1
    [merge_call] = fake_github.api_requests("PUT", r"/merge$")
    assert merge_call.json()["sha"] == head and merge_call.json()["merge_method"] == "squash"
    result, part = stored_merge(store)
    assert result.pr_state == "merged" and part.state == "merged"
    assert part.merge_sha == pull.merge_commit_sha and part.branch_deleted is True
    assert BRANCH not in fake_github.branches("acme/api")
    assert [h.outcome for h in part.history] == ["refused", "refused", "merged"]
    assert track_pull_requests(store, gh_settings) == []  # merged: no longer tracked


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda f: f.add_label("acme/api", 1, "do-not-merge"), 'labelled "do-not-merge"'),
        (
            lambda f: f.add_review("acme/api", 1, "bob", "CHANGES_REQUESTED"),
            "changes requested by bob",
        ),
        (lambda f: f.commit_files("acme/api", {"app.py": "x = 1\n"}), "conflicts with the base"),
        (lambda f: setattr(f.pull("acme/api", 1), "unknown_mergeability", 1), "not computed"),
    ],
    ids=["label", "changes-requested", "conflict", "mergeability-unknown"],
)
def test_merge_is_refused_with_its_reason(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, setup, reason: str
) -> None:
    head = open_pr(fake_github, gh_settings, store, merge="when_green")
    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "success")
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")
    setup(fake_github)
    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge.startswith("refused") and reason in tracked.merge
    assert not fake_github.pull("acme/api", 1).merged
    _, part = stored_merge(store)
    assert reason in part.reason


def test_auto_turns_on_github_auto_merge_which_merges_when_the_check_passes(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore
) -> None:
    head = open_pr(fake_github, gh_settings, store, merge="auto", merge_method="rebase")
    fake_github.repo("acme/api").allow_auto_merge = True
    fake_github.add_check_run("acme/api", head, "ci/test", "in_progress", None)
    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge == "auto_merge: auto-merge enabled (rebase)"
    assert fake_github.pull("acme/api", 1).auto_merge["merge_method"] == "rebase"
    [call] = fake_github.api_requests("POST", "^/graphql$")
    assert "enablePullRequestAutoMerge" in call.json()["query"]

    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "success")
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")
    [tracked] = track_pull_requests(store, gh_settings)  # GitHub merged it meanwhile
    assert tracked.after == "merged" and fake_github.pull("acme/api", 1).merged
    assert fake_github.file_at("acme/api", "main", "app.py") == NEW


def test_auto_where_the_repository_forbids_it_is_refused_and_says_why(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore
) -> None:
    open_pr(fake_github, gh_settings, store, merge="auto")
    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge == (
        "refused: auto-merge not enabled: the repository does not allow auto-merge "
        "(Settings: Allow auto-merge)"
    )
    assert fake_github.pull("acme/api", 1).auto_merge is None


def test_merge_command_merges_green_prs_and_reports_refusals(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    store: LocalStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODYBATCH_HOME", str(gh_settings.home))
    head = open_pr(fake_github, gh_settings, store)  # merge: off; the command merges anyway
    [tracked] = track_pull_requests(store, gh_settings)
    assert tracked.merge is None  # off: tracking never merges
    assert cli.main(["merge", "job-m"]) == 1
    out = capsys.readouterr().out
    assert f"{API}: refused  required check ci/test has not passed yet" in out

    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "success")
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")
    assert cli.main(["merge", "job-m", "acme/api"]) == 0
    assert f"{API}: merged" in capsys.readouterr().out
    assert fake_github.pull("acme/api", 1).merged
    _, part = stored_merge(store)
    assert part.history[-1].by == "cli"
    assert cli.main(["merge", "job-nope"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_fake_merge_refuses_a_moved_head_and_a_forbidden_method(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    from github import GithubException

    from codybatch.github import client

    head = open_pr(fake_github, gh_settings, store)
    fake_github.add_check_run("acme/api", head, "ci/test", "completed", "success")
    fake_github.add_review("acme/api", 1, "alice", "APPROVED")
    pull = client(gh_settings).get_repo("acme/api").get_pull(1)
    assert (pull.mergeable, pull.mergeable_state) == (True, "clean")
    with pytest.raises(GithubException) as moved:
        pull.merge(sha="0" * 40)
    assert moved.value.status == 409 and "Head branch was modified" in str(moved.value)
    fake_github.repo("acme/api").allow_merge_commit = False
    with pytest.raises(GithubException) as method:
        pull.merge(merge_method="merge")
    assert method.value.status == 405
    assert pull.merge(merge_method="rebase", sha=head).merged
