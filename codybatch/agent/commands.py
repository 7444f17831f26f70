"""The run_command tool: one fresh sandboxed process per command, in the checkout.

Whether the tool is offered is decided per job (its `shell` field) and per deployment (the
sandbox this worker can start, the same for all its workers), never per repository, so the
tool list stays byte-identical for every repository and turn of a job. The tool's text
holds no job fact: timeout, network and allowed commands are stated in the first message.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codybatch.redact import redact_text
from codybatch.sandbox import detect
from codybatch.settings import Settings
from codybatch.shell import run_command
from codybatch.spec import JobSpec

SHELL = "run_command"
SHELL_OUTPUT = 10_000  # characters of a command's output shown; head and tail kept
MAX_COMMAND = 10_000
OPERATORS = frozenset({";", "&&", "||", "|", "&", "\n", "|&", ";;"})

SHELL_TOOL: dict[str, Any] = {
    "name": SHELL,
    "description": (
        "Run one shell command (/bin/sh -c) in the repository, e.g. to run its tests, build "
        "it, run a linter or a codemod, or inspect it with grep, find or git log. Each call "
        "is a fresh process started in /repo: `cd` and variables do not carry over (chain "
        "with &&). No TTY and no standard input: use non-interactive flags. Returns the exit "
        "code, the duration and stdout+stderr merged (long output keeps its head and tail). "
        "The command runs in a sandbox: only /repo is writable (its .git/config and hooks "
        "are not), /tmp is private, and a command that runs past its timeout is killed."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "The command, e.g. `python -m pytest -q tests/test_app.py`.",
            }
        },
        "required": ["command"],
    },
}


@dataclass(frozen=True)
class ShellPolicy:
    """Whether this job's sessions get run_command, and on what terms."""

    offered: bool
    reason: str = ""  # why not, when not offered
    timeout: int = 120
    network: bool = False
    allowed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed"] = list(self.allowed)
        return data


def shell_policy(spec: JobSpec, settings: Settings) -> ShellPolicy:
    """The job's shell: offered unless `shell: false` or no sandbox can start here."""
    terms = {
        "timeout": spec.command_timeout,
        "network": spec.network,
        "allowed": tuple(spec.allowed_commands),
    }
    if spec.shell is False:
        return ShellPolicy(False, "the job sets shell: false", **terms)
    sandbox = detect(settings.sandbox)
    if not sandbox.available:
        return ShellPolicy(False, f"no sandbox can start on this worker: {sandbox.reason}", **terms)
    return ShellPolicy(True, **terms)


def describe(policy: ShellPolicy) -> str:
    """The first message's account of the shell for this job."""
    if not policy.offered:
        return f"There is no run_command tool in this job ({policy.reason})."
    network = (
        "has network access (the job allows it)"
        if policy.network
        else "has no network access: installers and downloads fail"
    )
    text = f"run_command {network}; each command is killed after {policy.timeout} s."
    if policy.allowed:
        listed = ", ".join(f"`{p}`" for p in policy.allowed)
        text += f" Only these commands are allowed (prefix patterns): {listed}."
    return text


def refusal(command: str, allowed: tuple[str, ...]) -> str | None:
    """Why `command` is not allowed by the prefix patterns, or None when it is."""
    if not allowed:
        return None
    listed = ", ".join(f"`{p}`" for p in allowed)
    if any(mark in command for mark in ("$(", "`", "<(", ">(")):
        return f"command substitution is not allowed in this job; allowed commands: {listed}"
    try:
        parts = simple_commands(command)
    except ValueError as exc:
        return f"the command cannot be parsed ({exc}); allowed commands: {listed}"
    for words in parts:
        if not any(_matches(words, pattern) for pattern in allowed):
            shown = " ".join(words)
            return f"`{shown}` is not allowed in this job; allowed commands: {listed}"
    return None


def simple_commands(command: str) -> list[list[str]]:
    """The words of each simple command in `command` (split at ;, &&, ||, |, & and newlines)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in OPERATORS:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _matches(words: list[str], pattern: str) -> bool:
    """Claude Code's syntax: `npm test:*` is a prefix, `npm test` the exact command;
    `Bash(...)` around either is accepted."""
    text = pattern.strip()
    if text.startswith("Bash(") and text.endswith(")"):
        text = text[5:-1]
    prefix = text.endswith(":*") or text.endswith(" *")
    wanted = shlex.split(text[:-2] if prefix else text)
    if prefix:
        return words[: len(wanted)] == wanted
    return words == wanted


def run_shell(
    tool_input: dict[str, Any], checkout: Path, policy: ShellPolicy, settings: Settings
) -> tuple[str, bool]:
    """Run one run_command call: (the text for the model, whether it is an error)."""
    command = tool_input.get("command")
    if not isinstance(command, str) or not command.strip():
        return "Error: run_command needs `command`: the shell command to run", True
    if len(command) > MAX_COMMAND:
        return f"Error: the command is {len(command):,} characters: at most {MAX_COMMAND:,}", True
    if not policy.offered:
        return f"Error: run_command is not available in this job: {policy.reason}", True
    refused = refusal(command, policy.allowed)
    if refused:
        return f"Error: not run: {refused}", True
    done = run_command(
        command,
        checkout,
        timeout=policy.timeout,
        output_limit=SHELL_OUTPUT,
        passthrough=settings.step_env,
        sandbox=detect(settings.sandbox),
        network=policy.network,
    )
    status = "timed out, killed (no exit code)" if done.timed_out else f"exit code {done.exit_code}"
    output = _scrub(done.output, settings.secrets) or "(no output)"
    return f"[{status}; {done.seconds:.2f} s]\n{output}", False


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """The sandbox keeps secrets out of reach; should one appear anyway, mask it (reversed too)."""
    return redact_text(text, [*secrets, *(s[::-1] for s in secrets)])
