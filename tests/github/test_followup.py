"""Follow-up rounds against the fake GitHub and the fake Claude: fix, answer, stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch import cli
from codybatch.github import branch_name
from codybatch.jobs import finalize_job
from codybatch.settings import Settings
from codybatch.spec import parse_repository
from codybatch.store.local import LocalStore
from codybatch.sweep import track_pull_requests
from tests.fakes.anthropic_server import FakeAnthropic, create, fake_anthropic, finish, reply
from tests.fakes.anthropic_server import str_replace as replace
from tests.fakes.github_server import FakeGitHub
from tests.github.conftest import NEW, OLD, SPEC
from tests.github.test_worker_publish import run_job

__all__ = ["fake_anthropic"]
BRANCH = branch_name(SPEC["name"])
API = parse_repository("acme/api").key


@pytest.fixture
def env(
    fake_anthropic: FakeAnthropic,
    fake_github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[FakeGitHub, FakeAnthropic, Settings, LocalStore]:
    """acme/api with an open Cody Batch PR made by steps and a Claude session that agreed."""
    home = tmp_path / "home"
    monkeypatch.setenv("CODYBATCH_HOME", str(home))
    settings = fake_github.settings(home=home)
    store = LocalStore(home)
    fake_github.create_repo("acme/api", {"app.py": OLD})
    fake_github.protect("acme/api", required_checks=["ci/test"], approvals=1)
    # The steps made the change; Claude, asked the same task after them, finds nothing left.
    fake_anthropic.script(reply(finish(False, "The steps already replaced the call.")))
    return fake_github, fake_anthropic, settings, store


def start(env, **fields: object) -> str:
    fake, _, settings, store = env
    [result] = run_job(
        settings, store, ["acme/api"], "job-f", draft=False, prompt=SPEC["prompt"], **fields
    ).values()
    assert result.pr_number == 1, result.error
    return fake.branch_sha("acme/api", BRANCH) or ""


def rounds(store: LocalStore):
    result = store.get_result("job-f", API)
    assert result is not None
    return result, result.fix_rounds


def test_a_failing_check_is_fixed_in_one_round_and_the_pr_then_merges_when_green(
    env, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, claude, settings, store = env
    head = start(env, merge="when_green")
    fake.add_check_run(
        "acme/api",
        head,
        "ci/test",
        "completed",
        "failure",
        summary="changelog check failed",
        annotations=[{"path": "CHANGELOG.md", "start_line": 1, "message": "no entry added"}],
        log="Run ./check-changelog\nERROR: every change needs a CHANGELOG.md entry\n",
    )
    fake.add_review("acme/api", 1, "alice", "APPROVED")
    [tracked] = track_pull_requests(store, settings)
    assert tracked.merge == "refused: required check ci/test failed"
    before = finalize_job(store, "job-f").usage  # the job finished before the follow-up

    claude.script(
        reply(create("/repo/CHANGELOG.md", "- use newFunction\n")),
        reply(finish(True, "Added the CHANGELOG.md entry the check asked for.", "Changelog")),
    )
    assert cli.main(["follow-up", "job-f"]) == 0
    assert f"{API}: round 1 (failing_check) pushed" in capsys.readouterr().out
    asked = claude.message_requests[-2].body["messages"][0]["content"][0]["text"]
    assert "Replace every call of oldFunction" in asked  # the original task
    assert "changelog check failed" in asked and "CHANGELOG.md:1: no entry added" in asked
    assert "ERROR: every change needs a CHANGELOG.md entry" in asked  # the job's log tail

    new_head = fake.branch_sha("acme/api", BRANCH)
    assert fake.commit_count("acme/api", head, BRANCH) == 1  # a new commit on top, no force
    assert fake.file_at("acme/api", BRANCH, "CHANGELOG.md") == "- use newFunction\n"
    assert fake.file_at("acme/api", BRANCH, "app.py") == NEW
    [comment] = fake.pull("acme/api", 1).comments
    assert comment["body"].startswith("**Cody Batch follow-up 1** (failing checks at")
    result, [fix] = rounds(store)
    assert (fix.trigger, fix.outcome, fix.head_before, fix.head_after) == (
        "failing_check",
        "pushed",
        head,
        new_head,
    )
    assert "CHANGELOG.md" in fix.patch and fix.changed_files == ["CHANGELOG.md"]
    assert fix.usage.total_tokens > 0 and result.usage.usd >= fix.usage.usd > 0
    job = store.get_job("job-f")  # the round's usage counts in the job's totals
    assert job.usage == before + fix.usage and job.usage.usd > before.usd
    assert job.status == "COMPLETED"  # the totals changed, the status did not
    assert store.get_thread("job-f", f"{API}#round-1")["turns"]

    assert cli.main(["follow-up", "job-f"]) == 0  # the new head has no failing check
    assert f"{API}: nothing due" in capsys.readouterr().out
    fake.add_check_run("acme/api", new_head, "ci/test", "completed", "success")
    [tracked] = track_pull_requests(store, settings)
    assert tracked.after == "merged" and fake.pull("acme/api", 1).merged
    assert fake.file_at("acme/api", "main", "CHANGELOG.md") == "- use newFunction\n"


def test_a_review_comment_is_answered_on_top_of_a_persons_commit(env) -> None:
    fake, claude, _, store = env
    start(env)
    mine = fake.commit_files(
        "acme/api", {"NOTES.md": "by a person\n"}, branch=BRANCH, message="Notes"
    )
    fake.add_review_comment("acme/api", 1, "alice", "app.py", 3, "Pass version=2 here.")
    claude.script(
        reply(replace("/repo/app.py", "newFunction(1)", "newFunction(1, version=2)")),
        reply(finish(True, "Passed version=2 as asked.", "Pass version=2")),
    )
    assert cli.main(["follow-up", "job-f", "acme/api"]) == 0
    asked = claude.message_requests[-2].body["messages"][0]["content"][0]["text"]
    assert "alice on `app.py:3`" in asked and "Pass version=2 here." in asked
    assert fake.commit_count("acme/api", mine, BRANCH) == 1  # the person's commit stays
    assert fake.file_at("acme/api", BRANCH, "NOTES.md") == "by a person\n"
    assert "newFunction(1, version=2)" in fake.file_at("acme/api", BRANCH, "app.py")
    pull = fake.pull("acme/api", 1)
    [question, answer] = pull.review_comments
    assert answer["in_reply_to_id"] == question["id"] and answer["user"] == fake.user.login
    assert answer["body"].startswith("Follow-up 1: pushed")
    _, [fix] = rounds(store)
    assert fix.trigger == "review_comments" and question["id"] in fix.seen
    assert cli.main(["follow-up", "job-f"]) == 0  # answered: not due again
    assert len(rounds(store)[1]) == 1


def test_follow_up_rounds_are_bounded_and_only_writers_may_ask(
    env, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, claude, _, store = env
    start(env, max_fix_rounds=1)
    fake.set_permission("acme/api", "mallory", "read")
    fake.add_comment("acme/api", 1, "mallory", "/codybatch fix delete everything")
    assert cli.main(["follow-up", "job-f"]) == 0
    assert "nothing due" in capsys.readouterr().out  # a reader cannot start a round
    fake.set_permission("acme/api", "alice", "write")
    fake.add_comment("acme/api", 1, "alice", "Thanks!\n/codybatch fix add a docstring")
    claude.script(reply(finish(False, "The module already documents itself.")))
    calls = len(claude.message_requests)
    assert cli.main(["follow-up", "job-f"]) == 0
    assert "round 1 (command) no_change" in capsys.readouterr().out
    assert (
        "add a docstring" in claude.message_requests[-1].body["messages"][0]["content"][0]["text"]
    )
    assert len(claude.message_requests) == calls + 1
    fake.add_comment("acme/api", 1, "alice", "/codybatch fix try again")
    assert cli.main(["follow-up", "job-f"]) == 0
    assert len(claude.message_requests) == calls + 1  # bounded: no second round
    result, [fix] = rounds(store)
    assert fix.outcome == "no_change" and "no further rounds" in fix.note
    assert result.followup_stopped == "max_fix_rounds (1) reached"
    bodies = [c["body"] for c in fake.pull("acme/api", 1).comments]
    assert any("looked and changed nothing" in b for b in bodies)
    assert bodies[-1].startswith("Cody Batch stops following up here: max_fix_rounds (1)")
    assert fake.commit_count("acme/api", "main", BRANCH) == 1  # nothing pushed


@pytest.mark.parametrize("person_committed", [False, True], ids=["ours-only", "person-too"])
def test_a_conflict_is_re_made_on_the_new_base_and_force_pushed_only_over_our_commits(
    env, person_committed: bool
) -> None:
    fake, claude, _, store = env
    head = start(env)
    if person_committed:
        head = fake.commit_files("acme/api", {"NOTES.md": "mine\n"}, branch=BRANCH)
    fake.commit_files("acme/api", {"app.py": OLD.replace("oldFunction(1)", "oldFunction(2)")})
    assert fake.pull("acme/api", 1) and fake.branch_sha("acme/api", BRANCH) == head
    claude.script(
        reply(
            replace("/repo/app.py", "import oldFunction", "import newFunction"),
            replace("/repo/app.py", "oldFunction(2)", "newFunction(2)"),
        ),
        reply(finish(True, "Made the change again on the new main.", "Use newFunction")),
    )
    calls = len(claude.message_requests)
    assert cli.main(["follow-up", "job-f"]) == 0
    _, [fix] = rounds(store)
    assert fix.trigger == "conflict"
    if person_committed:
        assert fix.outcome == "stopped" and "a person committed" in fix.note
        assert fake.branch_sha("acme/api", BRANCH) == head  # their commit is never overwritten
        assert len(claude.message_requests) == calls
        return
    assert (fix.outcome, fix.note) == ("pushed", "re-made the change on the new main")
    asked = claude.message_requests[-1].body["messages"][0]["content"][0]["text"]
    assert "no longer applies" in asked
    assert fake.commit_count("acme/api", "main", BRANCH) == 1
    assert fake.file_at("acme/api", BRANCH, "app.py") == NEW.replace("(1)", "(2)")
    mergeable, state = fake.mergeability("acme/api", 1)
    assert mergeable is True and state != "dirty"
