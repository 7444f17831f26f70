"""The approval decision on its own: reject and timeout publish nothing, approve publishes."""

from __future__ import annotations

import pytest

from codybatch.approval import PUBLISH_NONE, decide, reviewable
from codybatch.settings import Settings
from codybatch.store.local import LocalStore
from tests.fakes.github_server import FakeGitHub
from tests.github.test_worker_publish import run_job


@pytest.fixture
def store(gh_settings: Settings) -> LocalStore:
    return LocalStore(gh_settings.home)


@pytest.mark.parametrize(
    ("chosen", "by", "state"),
    [([PUBLISH_NONE], "alice", "rejected"), ([PUBLISH_NONE], None, "timed_out")],
    ids=["rejected", "timed-out"],
)
def test_reject_and_timeout_publish_nothing_and_say_who_and_when(
    fake_github: FakeGitHub,
    gh_settings: Settings,
    store: LocalStore,
    repos: list[str],
    chosen: list[str],
    by: str | None,
    state: str,
) -> None:
    results = run_job(gh_settings, store, repos, "job-r", review_before_publish=True)
    assert all(r.pr_number is None for r in results.values())  # patch-only until approved
    assert [r.repository for r in reviewable(store, "job-r")] == [
        "github.com/acme/api",
        "github.com/acme/web",
    ]
    decided = decide("job-r", chosen, by, gh_settings, store, at="2026-12-01T10:00:00+00:00")
    assert [r.approval.state for r in decided] == [state, state]
    assert {r.approval.by for r in decided} == {by}
    assert {r.approval.at for r in decided} == {"2026-12-01T10:00:00+00:00"}
    assert fake_github.pulls("acme/api") == [] and fake_github.pulls("acme/web") == []
    assert reviewable(store, "job-r") == []  # decided: not asked again
