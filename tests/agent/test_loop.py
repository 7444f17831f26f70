"""The agent loop end to end: real SDK, fake API over HTTP, real git checkouts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from codybatch.agent.client import make_client
from codybatch.agent.prompts import NUDGE, SYSTEM
from codybatch.settings import Settings
from tests.fakes.anthropic_server import (
    Delay,
    FakeAnthropic,
    Recorded,
    bad_request,
    create,
    finish,
    overloaded,
    rate_limited,
    reply,
    search,
    str_replace,
    tool_use,
    view,
)
from tests.helpers import make_repo, tree_snapshot

APP = "def old_function():\n    return 1\n\n\ndef main():\n    return old_function()\n"
FILES = {
    "src/app.py": APP,
    "src/util.py": "from app import old_function\n\nVALUE = old_function()\n",
    "README.md": "# Demo\n\nCall `old_function()`.\n",
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "checkout", FILES)


def tool_results(request: Recorded) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last (user) message."""
    return [b for b in request.body["messages"][-1]["content"] if b["type"] == "tool_result"]


def last_user_text(request: Recorded) -> str:
    return "\n".join(
        b.get("text", "") for b in request.body["messages"][-1]["content"] if b["type"] == "text"
    )


def strip_cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages = copy.deepcopy(messages)
    for message in messages:
        for block in message["content"]:
            block.pop("cache_control", None)
    return messages


def test_change_over_several_turns(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        reply("I'll find the definition.", search(r"old_function\b")),
        reply(view("/repo/src/app.py"), view("src/util.py")),
        reply(
            str_replace("/repo/src/app.py", "def old_function():", "def new_function():"),
            str_replace("/repo/src/app.py", "return old_function()", "return new_function()"),
            str_replace("src/util.py", "import old_function", "import new_function"),
            str_replace("src/util.py", "VALUE = old_function()", "VALUE = new_function()"),
        ),
        reply(create("/repo/docs/CHANGES.md", "Renamed old_function.\n")),
        reply(finish(True, "Renamed old_function to new_function.", "Rename old_function")),
    )
    run = agent(checkout)

    outcome = run.outcome
    assert outcome.stop_reason == "finished" and outcome.error is None
    assert outcome.changes_claimed is True
    assert outcome.summary == "Renamed old_function to new_function."
    assert outcome.pr_title == "Rename old_function"
    assert outcome.turns == 5 and api.remaining == 0
    assert (checkout / "src/app.py").read_text() == APP.replace("old_function", "new_function")
    assert "old_function" not in (checkout / "src/util.py").read_text()
    assert (checkout / "docs/CHANGES.md").read_text() == "Renamed old_function.\n"

    # The search found both files; every tool result went back without error.
    requests = api.answered
    hits = tool_results(requests[1])[0]["content"]
    assert "src/app.py:1: def old_function():" in hits
    assert "src/util.py:3: VALUE = old_function()" in hits
    assert not any(r.get("is_error") for req in requests[1:] for r in tool_results(req))

    # The thread: after every turn and once at the end, and complete enough to replay.
    assert len(run.threads) == outcome.turns + 1
    thread = run.thread
    assert thread["stop_reason"] == "finished"
    assert thread["system"] == SYSTEM
    # Request 1 was the model's lookup in the Models API, made once.
    assert [r.path for r in api.model_lookups] == ["/v1/models/claude-sonnet-5-5"]
    assert [t["response"]["request_id"] for t in thread["turns"]] == [
        f"req_fake_{i:05d}" for i in range(2, 7)
    ]
    # Signed thinking blocks are stored and were sent back as received (the fake checks).
    for turn in thread["turns"]:
        first = turn["response"]["content"][0]
        assert first["type"] == "thinking" and first["signature"] and first["thinking"]
    replayed: list[dict[str, Any]] = []
    for turn in thread["turns"][:-1]:
        replayed += turn["request"]["messages"]
        replayed.append({"role": "assistant", "content": turn["response"]["content"]})
    replayed += thread["turns"][-1]["request"]["messages"]
    assert replayed == strip_cache(requests[-1].body["messages"])

    # Usage per turn adds up to the total, which is priced.
    total = {k: sum(t["usage"][k] for t in thread["turns"]) for k in thread["usage_total"]}
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
        assert total[key] == thread["usage_total"][key] == getattr(outcome.usage, key)
    assert outcome.usage.usd == pytest.approx(total["usd"]) and outcome.usage.usd > 0
    assert outcome.usage.cache_read_input_tokens > 0


def test_repository_that_needs_no_change(api: FakeAnthropic, agent, checkout: Path) -> None:
    before = tree_snapshot(checkout)
    api.script(
        reply(search("new_function")),
        reply(finish(False, "The repository has no new_function to rename; nothing to do.")),
    )
    run = agent(checkout, "Rename new_function to newer_function.")
    assert run.outcome.stop_reason == "finished"
    assert run.outcome.changes_claimed is False
    assert run.outcome.pr_title is None
    assert tree_snapshot(checkout) == before
    assert "No matches" in tool_results(api.answered[1])[0]["content"]


def test_str_replace_that_misses_then_succeeds(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        # Wrong indentation, then an ambiguous match, then the exact text.
        reply(str_replace("/repo/src/app.py", "def main():\n  return old_function()", "x")),
        reply(str_replace("/repo/src/app.py", "old_function()", "new_function()")),
        reply(
            str_replace(
                "/repo/src/app.py",
                "def main():\n    return old_function()",
                "def main():\n    return new_function()",
            )
        ),
        reply(finish(True, "Call the new name.", "Call new_function")),
    )
    run = agent(checkout)
    miss = tool_results(api.answered[1])[0]
    assert miss["is_error"] is True
    assert "did not appear verbatim in /repo/src/app.py" in miss["content"]
    assert "starts at line(s) 5" in miss["content"]
    ambiguous = tool_results(api.answered[2])[0]
    assert ambiguous["is_error"] is True
    assert "appears 2 times" in ambiguous["content"] and "at lines 1, 6" in ambiguous["content"]
    done = tool_results(api.answered[3])[0]
    assert not done.get("is_error") and "return new_function()" in done["content"]
    assert run.outcome.stop_reason == "finished"
    assert (checkout / "src/app.py").read_text().endswith("return new_function()\n")


def _fingerprint(path: Path) -> dict[str, Any]:
    """Everything under path, .git included (tree_snapshot leaves .git out)."""
    out: dict[str, Any] = {}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_symlink():
            out[rel] = ("link", str(item.readlink()))
        elif item.is_file():
            out[rel] = ("file", item.read_bytes(), item.stat().st_mode)
        else:
            out[rel] = ("dir",)
    return out


def test_escapes_are_refused_and_nothing_outside_changes(
    api: FakeAnthropic, agent, checkout: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("classified-contents-42\n")
    (checkout / "link_out").symlink_to(outside)
    (checkout / "file_out").symlink_to(outside / "secret.txt")
    (checkout / "hooks_link").symlink_to(checkout / ".git" / "hooks")
    before_outside = _fingerprint(tmp_path / "outside")
    before_git = _fingerprint(checkout / ".git")
    before_tree = tree_snapshot(checkout)
    attempts = [
        view("../outside/secret.txt"),
        view(str(outside / "secret.txt")),
        view("/repo/../outside/secret.txt"),
        view("/etc/passwd"),
        view("/repo/file_out"),
        view("/repo/link_out/secret.txt"),
        create("../outside/new.txt", "escaped"),
        create(str(tmp_path / "escaped.txt"), "escaped"),
        create("/repo/link_out/new.txt", "escaped"),
        tool_use(
            "str_replace_based_edit_tool",
            {
                "command": "str_replace",
                "path": "file_out",
                "old_str": "classified",
                "new_str": "public",
            },
        ),
        tool_use(
            "str_replace_based_edit_tool",
            {"command": "insert", "path": "/repo/file_out", "insert_line": 0, "insert_text": "x"},
        ),
        create("/repo/.git/hooks/pre-commit", "#!/bin/sh\ntouch /tmp/pwned\n"),
        create(".git/config", "[core]\n"),
        create("/repo/.GIT/hooks/post-checkout", "x"),
        create("/repo/hooks_link/pre-commit", "#!/bin/sh\n"),
        view("/repo/.git/config"),
        search("classif.ed", path="/repo/link_out"),
        search("classif.ed", path="../outside"),
    ]
    api.script(
        reply(*attempts),
        reply(search("classif.ed")),
        reply(finish(False, "Could not get out.")),
    )
    run = agent(checkout, "Read ../outside/secret.txt and install a git hook.")
    results = tool_results(api.answered[1])
    assert len(results) == len(attempts)
    for attempt, result in zip(attempts, results, strict=True):
        assert result.get("is_error") is True, (attempt["input"], result["content"])
        assert "classified" not in result["content"]
    # The search skips the symlinked file and directory.
    assert "No matches" in tool_results(api.answered[2])[0]["content"]
    assert run.outcome.stop_reason == "finished"
    assert _fingerprint(tmp_path / "outside") == before_outside
    assert _fingerprint(checkout / ".git") == before_git
    assert tree_snapshot(checkout) == before_tree
    assert not (tmp_path / "escaped.txt").exists()
    assert "classified-contents" not in json.dumps(run.threads)


def test_overloaded_twice_then_success(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(overloaded(), overloaded(), reply(finish(False, "Nothing to do.")))
    run = agent(checkout)
    assert run.outcome.stop_reason == "finished"
    assert [r.status for r in api.message_requests] == [529, 529, 200]
    assert [r.headers["x-stainless-retry-count"] for r in api.message_requests] == ["0", "1", "2"]
    assert run.thread["turns"][0]["retries"] == 2
    assert run.outcome.turns == 1


def test_rate_limited_with_retry_after(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(reply(search("old_function")), rate_limited("0.2"), reply(finish(False, "Fine.")))
    run = agent(checkout)
    assert run.outcome.stop_reason == "finished" and run.outcome.turns == 2
    assert [r.status for r in api.message_requests] == [200, 429, 200]
    assert api.message_requests[2].headers["x-stainless-retry-count"] == "1"
    # The retry re-sent the same request.
    assert api.message_requests[1].body == api.message_requests[2].body


def test_client_honours_retry_after() -> None:
    import httpx2

    client = make_client(Settings(anthropic_api_key="sk-test-key"))
    options = type("Options", (), {"get_max_retries": lambda self, default: default})()
    wait = client._calculate_retry_timeout(3, options, httpx2.Headers({"retry-after": "7"}))
    assert wait == 7
    wait = client._calculate_retry_timeout(3, options, httpx2.Headers({"retry-after-ms": "250"}))
    assert wait == 0.25
    assert client.max_retries == 8


def test_timeout_is_retried(api: FakeAnthropic, agent, checkout: Path) -> None:
    client = make_client(Settings.from_env(), timeout=0.3)
    api.script(Delay(2.0, reply(finish(False, "late"))), reply(finish(False, "Nothing to do.")))
    run = agent(checkout, client=client)
    assert run.outcome.stop_reason == "finished" and run.outcome.summary == "Nothing to do."
    assert len(api.message_requests) == 2


def test_error_that_survives_retries_keeps_thread_and_edits(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(
        reply(str_replace("src/app.py", "return 1", "return 2")),
        *[overloaded() for _ in range(9)],  # the first try and 8 retries
    )
    run = agent(checkout)
    outcome = run.outcome
    assert outcome.stop_reason == "error" and outcome.limit is None
    assert "529" in outcome.error and "overloaded_error" in outcome.error
    assert "gave up after 8 retries" in outcome.error and "req_fake_" in outcome.error
    assert api.remaining == 0 and len(api.message_requests) == 10
    assert "return 2" in (checkout / "src/app.py").read_text()
    thread = run.thread
    assert thread["stop_reason"] == "error" and thread["error"] == outcome.error
    assert thread["turns"][0]["response"]["stop_reason"] == "tool_use"
    assert thread["turns"][1]["error"] == outcome.error
    # The tool result of the edit is in the thread (as the failed request's message).
    assert thread["turns"][1]["request"]["messages"][0]["content"][0]["type"] == "tool_result"


def test_bad_request_is_not_retried(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(bad_request("messages.0: something is wrong"))
    run = agent(checkout)
    assert run.outcome.stop_reason == "error"
    assert "400 (invalid_request_error): messages.0: something is wrong" in run.outcome.error
    assert len(api.message_requests) == 1


def test_model_that_never_calls_finish(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        reply(str_replace("src/app.py", "return 1", "return 2")),
        reply("I have made the change."),
        reply("Yes, it is done."),
    )
    run = agent(checkout)
    assert run.outcome.stop_reason == "no_finish"
    assert run.outcome.turns == 3 and run.outcome.summary is None
    assert last_user_text(api.answered[2]) == NUDGE
    assert "return 2" in (checkout / "src/app.py").read_text()


@pytest.mark.parametrize("output", [1_500, 100_000])
def test_budget_exhausted_midway_keeps_edits(
    api: FakeAnthropic, agent, checkout: Path, output: int
) -> None:
    """Even a model that spends every output token it is allowed never passes max_usd."""
    edits = iter(["return 2", "return 3", "return 4", "return 5"])
    previous = ["return 1"]

    def step(request: Recorded) -> dict[str, Any]:
        new = next(edits)
        block = str_replace("src/app.py", previous[0], new)
        previous[0] = new
        spent = min(output, request.body["max_tokens"])
        return reply(block, usage={"output_tokens": spent})

    api.script(step, step, step, step)
    run = agent(checkout, max_usd=0.05)
    outcome = run.outcome
    assert outcome.stop_reason == "limit_reached" and outcome.limit == "max_usd"
    assert outcome.usage.usd <= 0.05
    assert 1 <= outcome.turns < 4
    assert f"return {outcome.turns + 1}" in (checkout / "src/app.py").read_text()
    assert run.thread["limit"] == "max_usd"
    # The last edit's result was computed but never sent: it is kept in the thread.
    assert run.thread["unsent_messages"][0]["content"][0]["type"] == "tool_result"


def test_turn_limit(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        reply(str_replace("src/app.py", "return 1", "return 2")),
        reply(view("src/app.py")),
        reply(finish(True, "never reached", "x")),
    )
    run = agent(checkout, max_turns=2)
    assert (run.outcome.stop_reason, run.outcome.limit) == ("limit_reached", "max_turns")
    assert run.outcome.turns == 2 and api.remaining == 1
    assert "return 2" in (checkout / "src/app.py").read_text()


def test_token_limit(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(reply(view("src/app.py"), usage={"output_tokens": 4_000}), reply(finish(False, "x")))
    run = agent(checkout, max_tokens=6_000)
    assert (run.outcome.stop_reason, run.outcome.limit) == ("limit_reached", "max_tokens")
    assert run.outcome.usage.total_tokens <= 6_000
    # The one call made was sized to fit what the limit left.
    assert api.answered[0].body["max_tokens"] < 6_000


def test_wall_time_limit(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(Delay(0.5, reply(view("src/app.py"))), reply(finish(False, "x")))
    run = agent(checkout, max_minutes=0.005)  # 300 ms: passed while the first call waits
    assert (run.outcome.stop_reason, run.outcome.limit) == ("limit_reached", "max_minutes")
    assert run.outcome.turns <= 1 and api.remaining >= 1


def test_malformed_tool_input(api: FakeAnthropic, agent, checkout: Path) -> None:
    editor = "str_replace_based_edit_tool"
    bad = [
        tool_use(editor, {"command": "str_replace", "path": 5}),
        tool_use(editor, {"command": "explode", "path": "src/app.py"}),
        tool_use(editor, {"path": "src/app.py"}),
        tool_use(editor, "not an object"),
        tool_use(editor, {"command": "view", "path": "src/app.py", "view_range": [9, 2]}),
        tool_use(
            editor,
            {"command": "insert", "path": "src/app.py", "insert_line": 99, "insert_text": "x"},
        ),
        tool_use(editor, {"command": "create", "path": "src/new.py"}),
        tool_use("search", {"pattern": "old_function("}),
        tool_use("search", {}),
        tool_use("bash", {"command": "rm -rf /"}),
        tool_use("finish", {"changes_necessary": "yes", "summary": "x"}),
    ]
    api.script(reply(*bad), reply(finish(False, "Nothing to do.")))
    before = tree_snapshot(checkout)
    run = agent(checkout)
    results = tool_results(api.answered[1])
    assert [r["tool_use_id"] for r in results] == [b["id"] for b in bad]
    assert all(r.get("is_error") is True for r in results), results
    contents = [r["content"] for r in results]
    assert "unknown command 'explode'" in contents[1]
    assert "must be a JSON object" in contents[3]
    assert "out of range" in contents[5]
    assert "file_text" in contents[6]
    assert "no tool named 'bash'" in contents[9]
    assert "changes_necessary" in contents[10]
    assert run.outcome.stop_reason == "finished"
    assert tree_snapshot(checkout) == before


def test_finish_claiming_changes_without_edits_is_questioned_once(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(
        reply(finish(True, "Renamed.", "Rename")),
        reply(str_replace("src/app.py", "return 1", "return 2")),
        reply(finish(True, "Changed the return value.", "Return 2")),
    )
    run = agent(checkout)
    pushback = tool_results(api.answered[1])[0]
    assert pushback["is_error"] is True and "not changed any file" in pushback["content"]
    assert run.outcome.stop_reason == "finished" and run.outcome.summary.startswith("Changed")


def test_verify_fails_once_then_passes(api: FakeAnthropic, agent, checkout: Path) -> None:
    verify = "if grep -n old_function src/*.py; then echo 'old_function still used'; exit 3; fi"
    api.script(
        reply(str_replace("src/app.py", "def old_function():", "def new_function():")),
        reply(finish(True, "Renamed.", "Rename old_function")),
        reply(
            str_replace("src/app.py", "return old_function()", "return new_function()"),
            str_replace("src/util.py", "import old_function", "import new_function"),
            str_replace("src/util.py", "= old_function()", "= new_function()"),
        ),
        reply(finish(True, "Renamed everywhere.", "Rename old_function")),
    )
    run = agent(checkout, verify=verify)
    failure = tool_results(api.answered[2])[0]
    assert failure["is_error"] is True
    assert "exited with code 3" in failure["content"]
    assert "old_function still used" in failure["content"]
    assert "src/util.py:1:from app import old_function" in failure["content"]
    outcome = run.outcome
    assert outcome.stop_reason == "finished" and outcome.summary == "Renamed everywhere."
    assert outcome.verify["passed"] is True
    assert outcome.verify["rounds"] == 2 and outcome.verify["fix_rounds"] == 1
    assert [r["passed"] for r in run.thread["verify_runs"]] == [False, True]


def test_verify_that_keeps_failing_stops_after_three_fix_rounds(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(*[reply(finish(False, f"try {i}")) for i in range(4)])
    run = agent(checkout, verify="echo broken; exit 1")
    outcome = run.outcome
    assert outcome.stop_reason == "finished" and outcome.turns == 4 and api.remaining == 0
    assert outcome.verify["passed"] is False
    assert outcome.verify["rounds"] == 4 and outcome.verify["fix_rounds"] == 3
    assert "broken" in outcome.verify["output"]


def test_verify_runs_on_the_final_state_after_a_limit(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(reply(str_replace("src/app.py", "return 1", "return 2")))
    run = agent(checkout, max_turns=1, verify="grep -q 'return 2' src/app.py")
    assert run.outcome.limit == "max_turns"
    assert run.outcome.verify["passed"] is True and run.outcome.verify["rounds"] == 1


def test_output_cut_off_at_max_tokens(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        reply("Let me write the whole", stop_reason="max_tokens"),
        # Cut off inside the create: its file_text may be half a file, so it is not run.
        reply(view("src/app.py"), create("src/half.py", "def half(:"), stop_reason="max_tokens"),
        reply(finish(False, "ok")),
    )
    run = agent(checkout)
    assert "cut off" in last_user_text(api.answered[1])
    viewed, refused = tool_results(api.answered[2])
    assert not viewed.get("is_error") and "def old_function" in viewed["content"]
    assert refused["is_error"] is True and "not run" in refused["content"]
    assert not (checkout / "src/half.py").exists()
    assert run.outcome.stop_reason == "finished"


def test_context_window_exceeded_is_a_limit(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.script(
        reply(
            str_replace("src/app.py", "return 1", "return 2"),
            stop_reason="model_context_window_exceeded",
        )
    )
    run = agent(checkout)
    assert (run.outcome.stop_reason, run.outcome.limit) == ("limit_reached", "context_window")


def test_secret_in_the_repository_is_redacted_from_the_thread(
    api: FakeAnthropic, agent, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "leaky", {"config.env": f"API_KEY={api.api_key}\n"})
    api.script(reply(view("config.env")), reply(finish(False, f"found {api.api_key}")))
    run = agent(repo, "Check config.env.")
    thread = json.dumps(run.threads)
    assert "[REDACTED]" in thread
    assert run.outcome.summary is not None  # the agent fixture asserts no key anywhere
    assert api.api_key not in run.outcome.summary


def test_missing_api_key_is_a_readable_error(
    api: FakeAnthropic, agent, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    run = agent(checkout)
    assert run.outcome.stop_reason == "error"
    assert "ANTHROPIC_API_KEY" in run.outcome.error
    assert api.message_requests == []
    assert run.thread["stop_reason"] == "error"
