"""Prompt caching: breakpoints where they pay, and a prefix identical everywhere."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tests.fakes.anthropic_server import (
    FakeAnthropic,
    finish,
    reply,
    search,
    str_replace,
    view,
)
from tests.helpers import make_repo

EPHEMERAL = {"type": "ephemeral"}


def _session(api: FakeAnthropic, agent, repo: Path, prompt: str):
    start = len(api.answered)
    api.script(
        reply(search("def ")),
        reply(view("README.md")),
        reply(str_replace("README.md", "Hello", "Hello there")),
        reply(finish(True, "Greeted.", "Greet")),
    )
    run = agent(repo, prompt)
    assert run.outcome.stop_reason == "finished"
    return run, api.answered[start:]


def test_breakpoints_and_byte_identical_prefix(api: FakeAnthropic, agent, tmp_path: Path) -> None:
    first = make_repo(tmp_path / "alpha", {"README.md": "Hello\n", "a.py": "def a(): pass\n"})
    second = make_repo(
        tmp_path / "beta-service",
        {"README.md": "Hello world\n", "pkg/b.py": "def b():\n    return 2\n", "c.txt": "c"},
    )
    _, requests = _session(api, agent, first, "Greet more warmly in README.md.")
    _, more = _session(api, agent, second, "Say hello there in README.md (job 2, 2031-01-01).")
    requests += more
    assert len(requests) == 8

    # Tools and system are byte-identical across turns and across repositories: the
    # serialised segments as the SDK sent them are the same bytes every time.
    segments = set()
    for request in requests:
        raw = request.raw.decode()
        tools_at = raw.index('"tools"')
        system_at = raw.index('"system"')
        segments.add((_value_at(raw, tools_at), _value_at(raw, system_at)))
    assert len(segments) == 1
    (tools_text, system_text) = segments.pop()
    for name in ("alpha", "beta-service", str(tmp_path), "2031"):
        assert name not in tools_text + system_text

    for request in requests:
        body = request.body
        # The tools/system prefix ends in a breakpoint.
        assert body["tools"][-1]["cache_control"] == EPHEMERAL
        assert body["system"][-1]["cache_control"] == EPHEMERAL
        assert all("cache_control" not in tool for tool in body["tools"][:-1])
        # The rolling breakpoint is on the latest message; only the one before it stays.
        messages = body["messages"]
        assert messages[-1]["content"][-1]["cache_control"] == EPHEMERAL
        marked = [i for i, m in enumerate(messages) for b in m["content"] if "cache_control" in b]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        assert marked == users[-2:]
        assert request.raw.count(b'"cache_control"') <= 4


def _value_at(raw: str, key_at: int) -> str:
    """The JSON value (an array) that follows the key at key_at in raw, as raw text."""
    start = raw.index("[", key_at)
    value, end = json.JSONDecoder().raw_decode(raw[start:])
    assert isinstance(value, list)
    return raw[start : start + end]


def test_cache_reads_grow_and_carry_across_repositories(
    api: FakeAnthropic, agent, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", {"README.md": "Hello\n", "a.py": "def a(): pass\n"})
    run, _ = _session(api, agent, repo, "Greet more warmly in README.md.")
    reads = [t["usage"]["cache_read_input_tokens"] for t in run.thread["turns"]]
    assert reads[0] == 0 and all(b > a for a, b in itertools.pairwise(reads))
    # From the second turn on, almost all input is read from the cache.
    for turn in run.thread["turns"][1:]:
        usage = turn["usage"]
        billed = usage["input_tokens"] + usage["cache_creation_input_tokens"]
        assert usage["cache_read_input_tokens"] > billed

    other = make_repo(tmp_path / "s", {"README.md": "Hello\n", "b.py": "x = 1\n"})
    api.script(reply(finish(False, "Nothing.")))
    second = agent(other, "Something else entirely.")
    first_turn = second.thread["turns"][0]["usage"]
    # A new repository still reads the shared tools+system prefix from the cache.
    assert first_turn["cache_read_input_tokens"] > 0
