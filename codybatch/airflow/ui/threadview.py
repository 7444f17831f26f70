"""A stored Claude thread turned into turns for the thread page.

Reads the Messages API shapes robustly: a flat `messages` list, or `turns` each with a
`request` (messages sent) and a `response` (content), with `usage` per turn. Anything
unrecognised is still shown as raw JSON by the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from codybatch.airflow.ui.progressview import PHASES
from codybatch.records import RepositoryResult, RepositoryStatus, Usage

MAX_TEXT = 50_000  # per block shown; the JSON download holds everything
LAST_CALLS = 3  # tool calls shown at the top of a failed thread


@dataclass
class ToolCall:
    id: str
    name: str
    input: str
    result: str | None = None
    is_error: bool = False


@dataclass
class Turn:
    number: int
    texts: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    stop_reason: str | None = None
    error: str | None = None


@dataclass
class ToolDefinition:
    name: str
    description: str
    schema: str  # the input schema as JSON


@dataclass
class ThreadView:
    system: str = ""
    prompt: str = ""
    turns: list[Turn] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    facts: dict[str, Any] = field(default_factory=dict)
    tools: list[ToolDefinition] = field(default_factory=list)
    error: str | None = None  # why the session stopped, when it failed

    def last_calls(self, count: int = LAST_CALLS) -> list[tuple[int, ToolCall]]:
        """The session's last tool calls, with the number of their turn, oldest first."""
        calls = [(turn.number, call) for turn in self.turns for call in turn.tool_calls]
        return calls[-count:]


@dataclass
class WhatHappened:
    """The top of a failed (or stopped) thread page: the error first, then where and how."""

    error: str
    phase: str | None  # the worker's phase when it failed, in words
    stop_reason: str | None
    answered: int  # turns Claude answered (a failed call is a turn without an answer)
    last_calls: list[tuple[int, ToolCall]]
    last_error: tuple[int, str] | None  # the last turn that failed, and its error


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n… [{len(text) - MAX_TEXT:,} more characters in the JSON]"


def _text_of(content: Any) -> str:
    """Plain text of a content value: a string, a list of blocks, or anything (as JSON)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict) and block.get("type") == "image":
                parts.append("[image]")
            else:
                parts.append(_text_of(block) if isinstance(block, str) else as_json(block))
        return "\n".join(parts)
    return as_json(content)


def as_json(value: Any) -> str:
    """A value as indented JSON (as text when it is not JSON-like)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return str(value)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b if isinstance(b, dict) else {"type": "text", "text": str(b)} for b in content]
    return []


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    try:
        return Usage.from_dict(value)
    except (TypeError, ValueError):
        return None


def _messages_of(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [m for m in value if isinstance(m, dict)]
    return []


def _assistant_turns(thread: dict[str, Any]) -> list[tuple[Any, Any, Any, Any]]:
    """(content, usage, stop_reason, error) of each model call, in order."""
    out: list[tuple[Any, Any, Any, Any]] = []
    turns = [t for t in thread.get("turns") or [] if isinstance(t, dict)]
    if any(k in t for t in turns for k in ("response", "content", "assistant", "error")):
        for turn in turns:
            response = turn.get("response") if isinstance(turn.get("response"), dict) else turn
            content = response.get("content", turn.get("assistant"))
            usage = turn.get("usage") or response.get("usage")
            out.append((content, usage, response.get("stop_reason"), turn.get("error")))
        return out
    usages = [t.get("usage") for t in turns] or thread.get("usage_per_turn") or []
    for i, msg in enumerate(
        m for m in _messages_of(thread.get("messages")) if m.get("role") == "assistant"
    ):
        usage = msg.get("usage") or (usages[i] if i < len(usages) else None)
        out.append((msg.get("content"), usage, msg.get("stop_reason"), None))
    return out


def _all_user_messages(thread: dict[str, Any]) -> list[dict[str, Any]]:
    messages = _messages_of(thread.get("messages")) + _messages_of(thread.get("unsent_messages"))
    for turn in thread.get("turns") or []:
        if not isinstance(turn, dict):
            continue
        request = turn.get("request") if isinstance(turn.get("request"), dict) else {}
        messages += _messages_of(request.get("messages"))
        messages += _messages_of(turn.get("tool_results_message"))
        results = turn.get("tool_results")
        if isinstance(results, list):
            messages.append({"role": "user", "content": results})
    return [m for m in messages if m.get("role", "user") == "user"]


def _system_and_prompt(thread: dict[str, Any]) -> tuple[str, str]:
    system = thread.get("system")
    messages = _messages_of(thread.get("messages"))
    turns = thread.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[0], dict):
        request = turns[0].get("request") if isinstance(turns[0].get("request"), dict) else {}
        system = system or request.get("system")
        messages = messages or _messages_of(request.get("messages"))
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    prompt = thread.get("prompt") or (_text_of(first_user.get("content")) if first_user else "")
    return _clip(_text_of(system)), _clip(_text_of(prompt))


def build_thread(thread: dict[str, Any] | list[Any] | None) -> ThreadView:
    """The turns of a thread: assistant text, tool calls with inputs and results, usage."""
    if isinstance(thread, list):
        thread = {"messages": thread}
    if not isinstance(thread, dict):
        return ThreadView()
    results: dict[str, tuple[str, bool]] = {}
    for msg in _all_user_messages(thread):
        for block in _blocks(msg.get("content")):
            if block.get("type") == "tool_result" and block.get("tool_use_id"):
                results[str(block["tool_use_id"])] = (
                    _clip(_text_of(block.get("content"))),
                    bool(block.get("is_error")),
                )
    system, prompt = _system_and_prompt(thread)
    view = ThreadView(system=system, prompt=prompt)
    for number, (content, usage, stop_reason, error) in enumerate(
        _assistant_turns(thread), start=1
    ):
        turn = Turn(number=number, usage=_usage(usage), stop_reason=stop_reason)
        if error:
            turn.error = _clip(_text_of(error))
        for block in _blocks(content):
            kind = block.get("type")
            if kind == "text":
                turn.texts.append(_clip(str(block.get("text", ""))))
            elif kind in ("thinking", "redacted_thinking"):
                turn.thinking.append(_clip(str(block.get("thinking", "[redacted thinking]"))))
            elif kind in ("tool_use", "server_tool_use"):
                call_id = str(block.get("id", ""))
                result, is_error = results.get(call_id, (None, False))
                turn.tool_calls.append(
                    ToolCall(
                        call_id,
                        str(block.get("name", "?")),
                        _clip(as_json(block.get("input"))),
                        result,
                        is_error,
                    )
                )
            else:
                turn.texts.append(_clip(as_json(block)))
        if turn.usage:
            view.usage = view.usage + turn.usage
        view.turns.append(turn)
    total = _usage(thread.get("usage_total") or thread.get("usage"))
    if total and total.total_tokens:
        view.usage = total
    view.facts = {
        k: thread[k]
        for k in ("model", "effort", "provider", "stop_reason", "limit")
        if k in thread and isinstance(thread[k], str | int | float | bool)
    }
    if thread.get("error"):
        view.error = _clip(_text_of(thread["error"]))
    view.tools = _tools(thread.get("tools"))
    price = thread.get("price_per_million")
    if isinstance(price, dict) and price.get("known") is False:
        view.facts["price"] = "unknown: costs at the conservative rate"
    return view


def _tools(value: Any) -> list[ToolDefinition]:
    if not isinstance(value, list):
        return []
    return [
        ToolDefinition(
            str(t.get("name", "?")),
            _clip(str(t.get("description", ""))),
            _clip(as_json(t.get("input_schema", {}))),
        )
        for t in value
        if isinstance(t, dict)
    ]


def what_happened(view: ThreadView, result: RepositoryResult) -> WhatHappened | None:
    """What a person needs first on a failed repository's thread: None when nothing failed."""
    error = result.error or view.error
    failed = result.status == RepositoryStatus.FAILED or bool(view.error)
    if not (failed and error):
        return None
    last_error = next(((t.number, t.error) for t in reversed(view.turns) if t.error), None)
    if last_error and last_error[1] in error:
        last_error = None  # already the headline
    phase = result.failed_phase
    return WhatHappened(
        error=error,
        phase=PHASES.get(phase, str(phase)) if phase else None,
        stop_reason=result.stop_reason or view.facts.get("stop_reason"),
        answered=sum(1 for t in view.turns if not t.error),
        last_calls=view.last_calls(),
        last_error=last_error,
    )
