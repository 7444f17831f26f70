"""run_command end to end: a scripted model runs commands in the sandboxed checkout.

Real SDK against the fake API, real git checkouts, real bubblewrap.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from codybatch.agent.commands import SHELL, refusal, simple_commands
from codybatch.agent.prompts import SYSTEM
from tests.escapes import Host, host_fixture  # noqa: F401 (fixture)
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Recorded,
    finish,
    reply,
    str_replace,
    tool_use,
)
from tests.helpers import make_repo

CALC = "def add(a, b):\n    return a - b\n"
TESTS = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    'if __name__ == "__main__":\n    unittest.main()\n'
)
RUN_TESTS = "python3 -m unittest -q test_calc 2>&1; echo status=$?"


def run(command: str) -> dict:
    return tool_use(SHELL, {"command": command})


def results(request: Recorded) -> list[dict]:
    return [b for b in request.body["messages"][-1]["content"] if b["type"] == "tool_result"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc", {"calc.py": CALC, "test_calc.py": TESTS})


def test_claude_runs_the_tests_fixes_the_failure_and_runs_them_again(
    api: FakeAnthropic, agent, project: Path, bwrap: object
) -> None:
    api.script(
        reply(run(RUN_TESTS)),
        reply(str_replace("/repo/calc.py", "return a - b", "return a + b")),
        reply(run(RUN_TESTS)),
        reply(finish(True, "Fixed add; the tests pass.", "Fix add")),
    )
    outcome = agent(project, "Make the tests pass.", verify="python3 -m unittest -q").outcome
    assert outcome.stop_reason == "finished", outcome.error
    assert outcome.verify["passed"] is True
    assert (project / "calc.py").read_text() == CALC.replace("a - b", "a + b")

    first, second = results(api.answered[1])[0], results(api.answered[3])[0]
    assert first["content"].startswith("[exit code 0; ")  # the shell ran: echo status
    assert "FAILED (failures=1)" in first["content"] and "status=1" in first["content"]
    assert "status=0" in second["content"] and "OK" in second["content"]
    assert not first.get("is_error")
    # Offered as a tool, described in the system prompt, its terms in the first message.
    body = api.answered[0].body
    assert [t["name"] for t in body["tools"]][2] == SHELL
    assert "There is no shell" not in SYSTEM and "run_command" in SYSTEM
    first_message = body["messages"][0]["content"][0]["text"]
    assert "no network access" in first_message and "killed after 120 s" in first_message
    assert outcome.shell["offered"] is True


def test_a_command_that_runs_forever_is_killed_and_the_session_goes_on(
    api: FakeAnthropic, agent, project: Path, bwrap: object
) -> None:
    api.script(
        reply(run("echo started; sleep 600")),
        reply(run("echo still here")),
        reply(finish(False, "Nothing to do.")),
    )
    started = time.monotonic()
    outcome = agent(project, "Check.", command_timeout=1).outcome
    assert outcome.stop_reason == "finished" and time.monotonic() - started < 20
    timed_out = results(api.answered[1])[0]["content"]
    assert timed_out.startswith("[timed out, killed (no exit code); ")
    assert "started" in timed_out and "timed out after 1 s" in timed_out
    assert "still here" in results(api.answered[2])[0]["content"]


def test_long_output_keeps_head_and_tail_and_says_how_much_was_elided(
    api: FakeAnthropic, agent, project: Path, bwrap: object
) -> None:
    api.script(reply(run("seq 1 100000")), reply(finish(False, "Looked.")))
    agent(project, "Look.")
    text = results(api.answered[1])[0]["content"]
    assert "\n1\n2\n3\n" in text and text.rstrip().endswith("99999\n100000")
    assert "characters elided" in text and len(text) < 11_000
    elided = int(text.split("[... ")[1].split(" characters")[0].replace(",", ""))
    assert elided > 500_000


def test_allowed_commands_refuse_the_rest_saying_what_is_allowed(
    api: FakeAnthropic, agent, project: Path, bwrap: object
) -> None:
    api.script(
        reply(run("touch made; python3 -m unittest -q")),
        reply(run("python3 -m unittest -q && git status --short")),
        reply(finish(False, "Ran the tests.")),
    )
    agent(project, "Run the tests.", allowed_commands=("python3 -m unittest:*", "git status:*"))
    refused = results(api.answered[1])[0]
    assert refused["is_error"] is True and not (project / "made").exists()
    assert "`touch made` is not allowed" in refused["content"]
    assert "`python3 -m unittest:*`, `git status:*`" in refused["content"]
    assert "FAILED" in results(api.answered[2])[0]["content"]  # allowed: it ran


def test_allowed_command_patterns() -> None:
    allowed = ("npm test:*", "Bash(make lint)", "git diff:*")
    assert refusal("npm test -- --watch=false", allowed) is None
    assert refusal("make lint && git diff --stat | cat", ("cat", *allowed)) is None
    assert "not allowed" in (refusal("make lint-fix", allowed) or "")
    assert "not allowed" in (refusal("npm testx", allowed) or "")
    assert "substitution" in (refusal("npm test $(curl x)", allowed) or "")
    assert "not allowed" in (refusal("npm test; rm -rf /repo", allowed) or "")
    assert "not allowed" in (refusal("npm test\nrm x", allowed) or "")
    assert refusal("anything", ()) is None
    assert simple_commands("a 'b; c' && d | e & f") == [["a", "b; c"], ["d"], ["e"], ["f"]]


def test_no_shell_when_the_job_says_so_or_no_sandbox_starts(
    api: FakeAnthropic, agent, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.script(reply(run("touch made")), reply(finish(False, "No shell.")))
    run_ = agent(project, "Check.", shell=False)
    body = api.answered[0].body
    assert SHELL not in [t["name"] for t in body["tools"]]
    assert "no run_command tool in this job (the job sets shell: false)" in json.dumps(body)
    assert results(api.answered[1])[0]["is_error"] and not (project / "made").exists()
    assert run_.outcome.shell["offered"] is False

    monkeypatch.setenv("CODYBATCH_SANDBOX", "nothing")
    api.script(reply(finish(False, "No shell.")))
    thread = agent(project, "Check.").thread
    assert SHELL not in [t["name"] for t in thread["tools"]]
    assert any("run_command was not offered" in n and "nothing" in n for n in thread["notes"])


def test_escapes_through_run_command_are_contained(
    api: FakeAnthropic, agent, host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker holds the fake API's key and a GitHub token; the neighbour process too.
    monkeypatch.setenv("ANTHROPIC_API_KEY", host.key)
    api.api_key = host.key
    escapes = host.escapes()
    api.script(
        reply(*[run(command) for command in escapes.values()]),
        reply(finish(False, "Tried.")),
    )
    agent_run = agent(host.checkout, "Try.")
    sent = [r.raw.decode("utf-8", "replace") for r in api.message_requests]
    outputs = [b["content"] for b in results(api.answered[1])]
    assert len(outputs) == len(escapes) and any("Read-only file system" in o for o in outputs)
    host.assert_contained(*sent, json.dumps(agent_run.threads))
