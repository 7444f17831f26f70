"""Run shell commands in a checkout: timeouts, bounded output, no secrets in the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Variables a command run in a checkout must never see.
SECRET_VARIABLES = frozenset(
    {
        "ANTHROPIC_API_KEY",
        "CLAUDE_API_KEY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    }
)


def truncate(text: str, limit: int, what: str = "characters") -> str:
    """Keep the head and the tail of text, saying how much was elided in between."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    elided = len(text) - head - tail
    return f"{text[:head]}\n[... {elided:,} {what} elided ...]\n{text[-tail:]}"


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without secrets or git credential settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_VARIABLES and not k.startswith(("GIT_CONFIG_", "CODYBATCH_SECRET"))
    }
    env.update(extra or {})
    return env


@dataclass
class CommandResult:
    command: str
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_command(
    command: str, cwd: Path, timeout: float, output_limit: int = 20_000
) -> CommandResult:
    """Run one shell command in cwd with a timeout; output (stdout+stderr) is kept bounded."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=clean_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        # Kill the whole process group: a step's children must not outlive it.
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    except BaseException:
        # The worker is being stopped (cancel, SIGTERM): the step's own group goes too.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    text = out.decode("utf-8", "replace")
    if timed_out:
        text += f"\n[timed out after {timeout:g} s]"
    return CommandResult(
        command=command,
        exit_code=None if timed_out else proc.returncode,
        output=truncate(text, output_limit),
        seconds=round(time.monotonic() - start, 3),
        timed_out=timed_out,
    )
