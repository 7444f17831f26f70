"""The agent loop: call Claude, run its tool calls, repeat until finish or a limit.

Limits are checked before every model call and stop the loop cleanly: the edits stay
on disk and the thread is handed to `on_thread` after every turn, so a limit, an API
error or a crash still leaves the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anthropic

from codybatch.agent import prompts
from codybatch.agent.client import make_client, request_model
from codybatch.agent.commands import SHELL_TOOL, describe, shell_policy
from codybatch.agent.context import Instructions, build_first_message
from codybatch.agent.models import check_model, model_price, sent_effort
from codybatch.agent.pricing import usage_of
from codybatch.agent.tools import (
    EDITOR_TOOL,
    FINISH,
    FINISH_TOOL,
    OUTPUT_LIMIT,
    SEARCH_TOOL,
    Finish,
    ToolError,
    Workspace,
    parse_finish,
)
from codybatch.records import Usage
from codybatch.redact import redact, redact_text
from codybatch.settings import Settings
from codybatch.shell import truncate
from codybatch.spec import JobSpec
from codybatch.verify import run_verify

THREAD_FORMAT = "codybatch-thread/1"
MIN_OUTPUT_TOKENS = 1_024  # a call that cannot afford this much output is not made
EDITOR_SCHEMA_TOKENS = 700  # the text editor's built-in schema, billed but not sent
VERIFY_FIX_ROUNDS = 3
EPHEMERAL = {"type": "ephemeral"}

FINISHED = "finished"
LIMIT_REACHED = "limit_reached"
NO_FINISH = "no_finish"
ERROR = "error"


@dataclass
class AgentOutcome:
    """How the agent's session ended; the edits themselves are on disk in the checkout."""

    stop_reason: str
    limit: str | None = None
    summary: str | None = None
    pr_title: str | None = None
    changes_claimed: bool | None = None
    usage: Usage = field(default_factory=Usage)
    turns: int = 0
    error: str | None = None
    verify: dict[str, Any] | None = None
    price_known: bool = True  # False: costs are at the conservative rate (see the thread)
    shell: dict[str, Any] | None = None  # whether run_command was offered, on what terms
    instructions: dict[str, list[str]] | None = None  # the repository's files given to Claude

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = self.usage.to_dict()
        return data


class _Stop(Exception):
    def __init__(self, reason: str, limit: str | None = None, error: str | None = None):
        super().__init__(reason)
        self.reason, self.limit, self.error = reason, limit, error


def run_agent(
    checkout: Path,
    spec: JobSpec,
    settings: Settings,
    on_thread: Callable[[dict], None],
    *,
    client: anthropic.Anthropic | anthropic.AnthropicBedrock | None = None,
) -> AgentOutcome:
    """Let Claude make the job's change in checkout; on_thread gets the thread after each turn."""
    return _Session(Path(checkout), spec, settings, on_thread, client).run()


def tool_definitions(shell: bool = False) -> list[dict[str, Any]]:
    """The tools as sent, with the cache breakpoint closing the tool list (the same for every
    repository and turn of a job: `shell` is decided per job)."""
    commands = [SHELL_TOOL] if shell else []
    return [EDITOR_TOOL, SEARCH_TOOL, *commands, {**FINISH_TOOL, "cache_control": EPHEMERAL}]


def system_blocks(guidance: str = "") -> list[dict[str, Any]]:
    """The system prompt as sent; a job type's guidance is a second block after the fixed
    one, so the prefix stays byte-identical within a job. The last block closes the cache."""
    blocks = [{"type": "text", "text": prompts.SYSTEM}]
    if guidance.strip():
        blocks.append({"type": "text", "text": guidance.strip()})
    blocks[-1]["cache_control"] = EPHEMERAL
    return blocks


class _Session:
    def __init__(
        self,
        checkout: Path,
        spec: JobSpec,
        settings: Settings,
        on_thread: Callable[[dict], None],
        client: Any,
    ):
        self.checkout, self.spec, self.settings = checkout, spec, settings
        self.on_thread, self.client = on_thread, client
        self.model = spec.model or settings.model
        self.price = model_price(settings, self.model)
        self.facts: dict[str, Any] | None = None
        self.effort: str | None = None
        self.shell = shell_policy(spec, settings)
        self.instructions = Instructions.at_root(checkout)
        self.workspace = Workspace(checkout, self.shell, settings, self.instructions)
        self.started = time.monotonic()
        self.messages: list[dict[str, Any]] = []  # as sent, without cache markers
        self.pending: list[dict[str, Any]] = []  # content of the next user message
        self.turns: list[dict[str, Any]] = []
        self.usage = Usage()
        self.finish: Finish | None = None
        self.nudged = self.pushed_back = False
        self.edits = 0
        self.edits_at_verify = -1
        self.fix_rounds = 0
        self.verify_runs: list[dict[str, Any]] = []
        self.max_output = self.next_max_tokens = MIN_OUTPUT_TOKENS
        self.cached_tokens = 0  # input tokens of the last request: a cached prefix next time
        self.notes: list[str] = []
        if not self.shell.offered and spec.shell is not False:
            self.notes.append(f"run_command was not offered: {self.shell.reason}")

    # -- the loop ---------------------------------------------------------

    def run(self) -> AgentOutcome:
        stop = _Stop(ERROR, error="the agent stopped unexpectedly")
        try:
            if self.client is None:
                self.client = make_client(self.settings)
        except ValueError as exc:  # configuration: no key, unknown provider
            stop = _Stop(ERROR, error=str(exc))
        else:
            try:
                self.check_model()
                first = build_first_message(
                    self.checkout,
                    self.spec.task,
                    self.spec.verify,
                    describe(self.shell),
                    self.instructions,
                )
                self.pending = [_text(first)]
                self.loop()
            except _Stop as raised:
                stop = raised
            except Exception as exc:  # a bug must not lose the thread or the edits
                error = f"internal error in the agent: {type(exc).__name__}: {exc}"
                stop = _Stop(ERROR, error=error)
        if self.should_verify_at_end(stop):
            self.run_verify()
        outcome = self.outcome(stop)
        self.publish(outcome)
        return outcome

    def check_model(self) -> None:
        """The model's facts (looked up once per process); a retired model is never called."""
        check = check_model(self.spec, self.settings, self.client)
        self.notes.extend(check.warnings)
        if check.errors:
            raise _Stop(ERROR, error="; ".join(str(e) for e in check.errors))
        assert check.facts is not None
        self.facts = check.facts.to_dict()
        self.effort = sent_effort(check.facts, self.spec.effort or self.settings.effort)
        self.max_output = self.next_max_tokens = check.facts.output_tokens

    def loop(self) -> None:
        while True:
            self.check_limits()
            response = self.call_model()
            uses = [b for b in response["content"] if b.get("type") == "tool_use"]
            stop_reason = response["stop_reason"]
            if stop_reason == "refusal":
                raise _Stop(ERROR, error="Claude declined to continue (stop_reason: refusal)")
            if stop_reason == "model_context_window_exceeded":
                raise _Stop(LIMIT_REACHED, limit="context_window")
            cut = None
            if stop_reason == "max_tokens" and response["content"][-1:] == uses[-1:] and uses:
                # The output stopped inside this call: running it could write half a file.
                cut, uses = uses[-1], uses[:-1]
            results = self.run_tools(uses)
            if cut is not None:
                results.append(_result(cut["id"], prompts.CUT_OFF_CALL, True))
            if stop_reason == "max_tokens":
                results.append(_text(prompts.TRUNCATED))
            elif not uses:
                if self.nudged:
                    raise _Stop(NO_FINISH)
                self.nudged = True
                results.append(_text(prompts.NUDGE))
            self.pending = results

    def run_tools(self, uses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tool results for every tool_use, in order; a finish call may end the session."""
        results: list[dict[str, Any]] = []
        finish_call: tuple[str, Finish] | None = None
        for use in uses:
            if use.get("name") == FINISH:
                if finish_call:
                    results.append(_result(use["id"], "Error: finish was already called", True))
                    continue
                try:
                    finish_call = (use["id"], parse_finish(use.get("input")))
                except ToolError as exc:
                    results.append(_result(use["id"], f"Error: {exc}", True))
                continue
            outcome = self.workspace.run(use.get("name", ""), use.get("input"))
            if outcome.edited and not outcome.is_error:
                self.edits += 1
            results.append(
                _result(use["id"], truncate(outcome.text, OUTPUT_LIMIT), outcome.is_error)
            )
        if finish_call is None:
            return results
        use_id, finish = finish_call
        if finish.changes_necessary and self.edits == 0 and not self.pushed_back:
            # "No patch" after a run that looked successful is what users hate most.
            self.pushed_back = True
            results.append(_result(use_id, prompts.CLAIMED_WITHOUT_EDITS, True))
            return results
        self.finish = finish
        failure = self.verify_after_finish()
        if failure is None:
            self.pending = [*results, _result(use_id, "Recorded. The session is over.")]
            raise _Stop(FINISHED)
        results.append(_result(use_id, failure, True))
        return results

    # -- limits -----------------------------------------------------------

    def check_limits(self) -> None:
        """Stop before a call that would exceed a limit; size the call to fit what is left."""
        spec = self.spec
        if time.monotonic() - self.started >= spec.max_minutes * 60:
            raise _Stop(LIMIT_REACHED, limit="max_minutes")
        if len(self.turns) >= spec.max_turns:
            raise _Stop(LIMIT_REACHED, limit="max_turns")
        new_tokens = self.estimate_new_tokens()
        tokens_left = spec.max_tokens - self.usage.total_tokens - self.cached_tokens - new_tokens
        if tokens_left < MIN_OUTPUT_TOKENS:
            raise _Stop(LIMIT_REACHED, limit="max_tokens")
        # The last request's input is read from the cache next time, if caching works.
        caching = not self.turns or any(
            self.turns[-1].get("usage", {}).get(k)
            for k in ("cache_read_input_tokens", "cache_creation_input_tokens")
        )
        prefix_price = self.price.cache_read if caching else self.price.input
        input_usd = (
            self.cached_tokens * prefix_price + new_tokens * self.price.cache_write
        ) / 1_000_000
        usd_left = spec.max_usd - self.usage.usd - input_usd
        affordable = int(usd_left * 1_000_000 / self.price.output)
        if affordable < MIN_OUTPUT_TOKENS:
            raise _Stop(LIMIT_REACHED, limit="max_usd")
        self.next_max_tokens = min(self.max_output, tokens_left, affordable)

    def estimate_new_tokens(self) -> int:
        """Tokens the next request adds to the cached prefix (about 3 characters a token)."""
        if not self.turns:
            tools = len(str(tool_definitions(self.shell.offered)))
            fixed = len(prompts.SYSTEM) + tools + EDITOR_SCHEMA_TOKENS * 3
            return (fixed + len(str(self.pending))) // 3
        last = self.turns[-1]["response"]
        return last["usage"]["output_tokens"] + len(str(self.pending)) // 3

    # -- the model --------------------------------------------------------

    def call_model(self) -> dict[str, Any]:
        self.messages.append({"role": "user", "content": self.pending})
        self.pending = []
        turn: dict[str, Any] = {
            "index": len(self.turns) + 1,
            "request": {"messages": [self.messages[-1]], "max_tokens": self.next_max_tokens},
        }
        started = time.monotonic()
        try:
            # Thinking stays the model's default (adaptive); effort only where it is accepted.
            extra = {"output_config": {"effort": self.effort}} if self.effort else {}
            raw = self.client.messages.with_raw_response.create(
                model=request_model(self.settings, self.model),
                max_tokens=self.next_max_tokens,
                system=system_blocks(self.spec.guidance),
                tools=tool_definitions(self.shell.offered),
                messages=self.request_messages(),
                **extra,
            )
            message = raw.parse()
        except (anthropic.AnthropicError, ValueError) as exc:
            error = redact_text(describe_error(exc), self.settings.secrets)
            turn.update(error=error, seconds=round(time.monotonic() - started, 3))
            self.turns.append(turn)
            raise _Stop(ERROR, error=error) from None
        content = [
            b.to_dict(mode="json", exclude_none=True, warnings=False) for b in message.content
        ]
        usage = usage_of(message.usage, self.price)
        self.usage += usage
        self.cached_tokens = (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        )
        response = {
            "id": message.id,
            "request_id": raw.request_id,
            "model": message.model,
            "content": content,
            "stop_reason": message.stop_reason,
            "usage": message.usage.to_dict(mode="json", exclude_none=True, warnings=False),
        }
        turn.update(
            response=response,
            usage=usage.to_dict(),
            retries=raw.retries_taken,
            seconds=round(time.monotonic() - started, 3),
        )
        self.turns.append(turn)
        self.messages.append({"role": "assistant", "content": _sendable(content)})
        self.publish()
        return response

    def request_messages(self) -> list[dict[str, Any]]:
        """The messages with rolling cache breakpoints on the last two user messages.

        With the tools and system breakpoints that makes the API's maximum of four; the
        older of the two keeps the previous request's prefix readable when a turn adds
        more blocks than the API looks back over.
        """
        messages = list(self.messages)
        users = [i for i, m in enumerate(messages) if m["role"] == "user"][-2:]
        for i in users:
            content = [dict(block) for block in messages[i]["content"]]
            content[-1]["cache_control"] = EPHEMERAL
            messages[i] = {**messages[i], "content": content}
        return messages

    # -- verify -----------------------------------------------------------

    def verify_after_finish(self) -> str | None:
        """None when there is nothing more to do, else the failure to send back for a fix."""
        if not self.spec.verify:
            return None
        run = self.run_verify()
        if run["passed"] or self.fix_rounds >= VERIFY_FIX_ROUNDS:
            return None
        self.fix_rounds += 1
        return prompts.verify_failed(
            self.spec.verify, run["exit_code"], run["output"], VERIFY_FIX_ROUNDS - self.fix_rounds
        )

    def run_verify(self) -> dict[str, Any]:
        assert self.spec.verify
        run = run_verify(self.spec.verify, self.checkout, self.settings, self.spec.network)
        run["after_turn"] = len(self.turns)
        self.verify_runs.append(run)
        self.edits_at_verify = self.edits
        return run

    def should_verify_at_end(self, stop: _Stop) -> bool:
        """Record verify on the final state when the session ended without a verified finish."""
        if not self.spec.verify or stop.reason in (FINISHED, ERROR):
            return False
        if stop.limit == "max_minutes":
            return False
        return self.edits != self.edits_at_verify

    # -- the record -------------------------------------------------------

    def outcome(self, stop: _Stop) -> AgentOutcome:
        finish = self.finish
        verify = None
        if self.verify_runs:
            last = self.verify_runs[-1]
            verify = {
                "command": last["command"],
                "passed": last["passed"],
                "rounds": len(self.verify_runs),
                "fix_rounds": self.fix_rounds,
                "exit_code": last["exit_code"],
                "output": last["output"],
            }
        secrets = self.settings.secrets
        return AgentOutcome(
            stop_reason=stop.reason,
            limit=stop.limit,
            summary=redact_text(finish.summary, secrets) if finish else None,
            pr_title=redact_text(finish.pr_title, secrets) if finish and finish.pr_title else None,
            changes_claimed=finish.changes_necessary if finish else None,
            usage=self.usage,
            turns=len(self.turns),
            error=redact_text(stop.error, secrets) if stop.error else None,
            verify=verify,
            price_known=self.price.known,
            shell=self.shell.to_dict(),
            instructions=self.instructions.to_dict(),
        )

    def thread(self, outcome: AgentOutcome | None) -> dict[str, Any]:
        spec = self.spec
        data: dict[str, Any] = {
            "format": THREAD_FORMAT,
            "model": self.model,
            "request_model": request_model(self.settings, self.model),
            "provider": self.settings.claude_provider,
            "price_per_million": self.price.to_dict(),
            "model_facts": self.facts,
            "effort": self.effort,
            "limits": {
                "max_turns": spec.max_turns,
                "max_tokens": spec.max_tokens,
                "max_usd": spec.max_usd,
                "max_minutes": spec.max_minutes,
            },
            "system": prompts.SYSTEM,
            "tools": tool_definitions(self.shell.offered),
            "shell": self.shell.to_dict(),
            "instructions": self.instructions.to_dict(),
            "turns": self.turns,
            "usage_total": self.usage.to_dict(),
            "verify_runs": self.verify_runs,
            "notes": self.notes,
            "stop_reason": None,
        }
        if outcome is not None:
            data.update(
                stop_reason=outcome.stop_reason,
                limit=outcome.limit,
                error=outcome.error,
                finish=(
                    {
                        "changes_necessary": self.finish.changes_necessary,
                        "summary": self.finish.summary,
                        "pr_title": self.finish.pr_title,
                    }
                    if self.finish
                    else None
                ),
                # Computed but never sent: tool results of the last turn.
                unsent_messages=[{"role": "user", "content": self.pending}] if self.pending else [],
            )
        return data

    def publish(self, outcome: AgentOutcome | None = None) -> None:
        self.on_thread(redact(self.thread(outcome), self.settings.secrets))


def describe_error(exc: BaseException) -> str:
    """A readable one-line account of an API failure that survived the SDK's retries."""
    if isinstance(exc, anthropic.APIStatusError):
        retries = exc.response.request.headers.get("x-stainless-retry-count", "0")
        kind = exc.type or "error"
        message = exc.api_message or exc.message
        return (
            f"Claude API error {exc.status_code} ({kind}): {message} "
            f"[request id {exc.request_id or 'unknown'}; gave up after {retries} retries]"
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return "the Claude API timed out on every attempt"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return f"could not reach the Claude API: {cause}"
    return f"Claude API call failed: {type(exc).__name__}: {exc}"


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _result(tool_use_id: str, text: str, is_error: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


def _sendable(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response content as it can be sent back (the API rejects empty text blocks)."""
    blocks = [b for b in content if not (b.get("type") == "text" and not b.get("text"))]
    return blocks or [_text("(no content)")]
