"""End to end through the worker and publish_stored: real git, the fake GitHub, a local store."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from codybatch.github import branch_name
from codybatch.jobs import register_job
from codybatch.publish import PublishError, publish_stored
from codybatch.records import RepositoryResult, RepositoryStatus
from codybatch.settings import Settings
from codybatch.spec import JobSpec, parse_repository
from codybatch.store.local import LocalStore
from codybatch.worker import run_worker
from tests.fakes.github_server import FakeGitHub
from tests.github.conftest import NEW, SPEC

BRANCH = branch_name(SPEC["name"])
REPLACE = 'for f in *.py; do [ -f "$f" ] && sed -i s/oldFunction/newFunction/g "$f"; done; true'


@pytest.fixture
def store(gh_settings: Settings) -> LocalStore:
    return LocalStore(gh_settings.home)


def run_job(
    settings: Settings,
    store: LocalStore,
    repositories: list[str],
    job_id: str,
    steps: tuple[str, ...] = (REPLACE,),
    create_pull_requests: bool = True,
    **fields: object,
) -> dict[str, RepositoryResult]:
    """Register a shell-step job (no Claude) and run the worker for every repository."""
    conf = {**SPEC, "repositories": repositories, "steps": list(steps), **fields}
    if "prompt" not in fields:
        conf.pop("prompt")
    conf["create_pull_requests"] = create_pull_requests
    spec = JobSpec.parse(conf, settings)
    register_job(spec, store, job_id=job_id)
    return {
        name: run_worker(job_id, parse_repository(name).key, settings=settings, store=store)
        for name in repositories
    }


def actions(results: dict[str, RepositoryResult]) -> dict[str, str | None]:
    return {n: (r.publishing.action if r.publishing else None) for n, r in results.items()}


def test_runs_open_then_keep_then_close_pull_requests(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    first = run_job(gh_settings, store, repos, "job-first")
    assert {n: r.status for n, r in first.items()} == dict.fromkeys(
        repos, RepositoryStatus.COMPLETED
    )
    assert actions(first) == {"acme/api": "opened", "acme/web": "opened", "acme/docs": "none"}
    assert [len(fake_github.pulls(n)) for n in repos] == [1, 1, 0]
    assert fake_github.file_at("acme/api", BRANCH, "app.py") == NEW
    stored = store.get_result("job-first", parse_repository("acme/api").key)
    assert stored is not None and stored.pr_url == fake_github.pull_url("acme/api", 1)
    assert (stored.pr_number, stored.pr_state) == (1, "open")

    second = run_job(gh_settings, store, repos, "job-second")
    assert actions(second) == {
        "acme/api": "unchanged",
        "acme/web": "unchanged",
        "acme/docs": "none",
    }
    assert [len(fake_github.pulls(n)) for n in repos] == [1, 1, 0]
    assert "job-second" in fake_github.pulls("acme/api")[0].body  # points at the newest results

    third = run_job(gh_settings, store, repos, "job-third", steps=("true",))
    assert actions(third) == {"acme/api": "closed", "acme/web": "closed", "acme/docs": "none"}
    assert [p.state for n in repos for p in fake_github.pulls(n)] == ["closed", "closed"]
    assert third["acme/api"].pr_state == "closed"


def test_merged_pull_request_is_not_reopened_by_a_rerun(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    run_job(gh_settings, store, ["acme/api"], "job-1")
    fake_github.merge_pull("acme/api", 1, update_base=False)
    again = run_job(gh_settings, store, ["acme/api"], "job-2")
    assert actions(again) == {"acme/api": "left_alone_merged"}
    assert again["acme/api"].status == RepositoryStatus.COMPLETED
    assert again["acme/api"].pr_state == "merged"
    assert len(fake_github.pulls("acme/api")) == 1


def test_rejected_push_fails_the_repository_and_keeps_the_patch(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    fake_github.protect_branch("acme/api", BRANCH)
    results = run_job(gh_settings, store, ["acme/api", "acme/web"], "job-1")
    api = results["acme/api"]
    assert api.status == RepositoryStatus.FAILED
    assert "rejected" in (api.error or "") and "Protected branch" in (api.error or "")
    assert api.were_changes_necessary is True and api.has_patch
    patch = store.get_patch("job-1", api.repository) or b""
    assert b"+newFunction(1)" in patch
    assert fake_github.pulls("acme/api") == []
    assert results["acme/web"].status == RepositoryStatus.COMPLETED  # the others go on
    assert len(fake_github.pulls("acme/web")) == 1

    # Once the branch is unprotected, publishing the stored patch needs no new run.
    (fake_github.repo("acme/api").bare / "codybatch-protected").unlink()
    (published,) = publish_stored("job-1", "acme/api", gh_settings, store)
    assert published.status == RepositoryStatus.COMPLETED and published.error is None
    assert published.publishing.action == "opened"
    assert len(fake_github.pulls("acme/api")) == 1


def test_archived_or_missing_repository_fails_before_cloning(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    fake_github.archive("acme/web")
    fake_github.hide("acme/docs")
    results = run_job(gh_settings, store, ["acme/web", "acme/docs"], "job-1")
    assert results["acme/web"].status == RepositoryStatus.FAILED
    assert "archived" in (results["acme/web"].error or "")
    assert results["acme/docs"].status == RepositoryStatus.FAILED
    assert "not found or not visible to the token" in (results["acme/docs"].error or "")
    assert fake_github.git_requests() == []


def test_no_push_access_is_patch_only(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    fake_github.set_push("acme/api", False)
    [result] = run_job(gh_settings, store, ["acme/api"], "job-1").values()
    assert result.status == RepositoryStatus.COMPLETED and result.has_patch
    assert result.publishing.reason == "no push access: patch only"
    assert fake_github.pulls("acme/api") == []


def test_token_never_reaches_the_store_or_logs(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    store: LocalStore,
    repos: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = gh_settings.github_token
    fake_github.protect_branch("acme/web", BRANCH)  # an error message goes to the store too
    with caplog.at_level(logging.DEBUG):
        run_job(gh_settings, store, repos, "job-1")
        run_job(gh_settings, store, repos, "job-2", steps=("true",))
    assert token not in caplog.text
    files = [p for p in Path(gh_settings.home).rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert token.encode() not in path.read_bytes(), path
    assert all(token not in r.path for r in fake_github.requests)


def test_publish_stored_opens_pull_requests_for_a_job_run_without_them(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    ran = run_job(gh_settings, store, repos, "job-1", create_pull_requests=False)
    assert all(r.publishing is None for r in ran.values())
    assert all(fake_github.pulls(n) == [] for n in repos)

    published = {r.repository: r for r in publish_stored("job-1", None, gh_settings, store)}
    key = {n: parse_repository(n).key for n in repos}
    assert published[key["acme/api"]].publishing.action == "opened"
    assert published[key["acme/web"]].publishing.action == "opened"
    assert published[key["acme/docs"]].publishing.action == "none"
    [pull] = fake_github.pulls("acme/api")
    assert fake_github.file_at("acme/api", BRANCH, "app.py") == NEW
    stored = store.get_result("job-1", key["acme/api"])
    assert stored is not None and (stored.pr_url, stored.pr_number) == (
        fake_github.pull_url("acme/api", pull.number),
        1,
    )
    assert stored.status == RepositoryStatus.COMPLETED

    # Again, one repository: the same PR, nothing pushed, no duplicate.
    [again] = publish_stored("job-1", "acme/api", gh_settings, store)
    assert again.publishing.action == "unchanged"
    assert len(fake_github.pulls("acme/api")) == 1


def test_publish_stored_reports_what_cannot_be_published(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    run_job(gh_settings, store, ["acme/api", "acme/web"], "job-1", create_pull_requests=False)
    fake_github.commit_files("acme/api", {"app.py": "rewritten by a person\n"})
    fake_github.archive("acme/web")
    results = {r.repository: r for r in publish_stored("job-1", None, gh_settings, store)}
    api = results[parse_repository("acme/api").key].publishing
    web = results[parse_repository("acme/web").key].publishing
    assert api.action == "failed" and "no longer applies" in api.reason
    assert web.action == "failed" and "archived" in web.reason
    assert fake_github.pulls("acme/api") == fake_github.pulls("acme/web") == []
    with pytest.raises(PublishError, match="not a repository of job"):
        publish_stored("job-1", "acme/docs", gh_settings, store)
    with pytest.raises(PublishError, match="does not exist"):
        publish_stored("job-nope", None, gh_settings, store)


def test_publish_stored_refuses_a_failed_run(
    fake_github: FakeGitHub, gh_settings: Settings, store: LocalStore, repos: list[str]
) -> None:
    run_job(
        gh_settings, store, ["acme/api"], "job-1", steps=("exit 3",), create_pull_requests=False
    )
    [result] = publish_stored("job-1", None, gh_settings, store)
    assert result.status == RepositoryStatus.FAILED
    assert result.publishing.action == "failed"
    assert "only a completed run can be published" in result.publishing.reason
    assert fake_github.pulls("acme/api") == []


def test_settings_from_the_fixture_environment(fake_github: FakeGitHub) -> None:
    settings = Settings.from_env()
    assert dataclasses.astuple(settings)  # the env the fixture set parses
    assert settings.github_pr_interval == 0 and settings.github_max_wait == 0.01
