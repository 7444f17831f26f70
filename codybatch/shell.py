"""Run shell commands in a checkout: sandboxed, timeouts, bounded output, no secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codybatch import orphans
from codybatch.sandbox import DEFAULT_LIMITS, Limits, Sandbox, confined, environment

# What a command run in a checkout may see of the worker's environment: an allowlist, so
# credentials (tokens, AWS keys, Airflow's database URL and secret keys) never reach it.
PASSED_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
# Never passed, even when asked for by CODYBATCH_STEP_ENV.
SECRET_VARIABLES = frozenset(
    {
        "ANTHROPIC_API_KEY",
        "CLAUDE_API_KEY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
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


def clean_environment(
    extra: dict[str, str] | None = None, passthrough: Iterable[str] = ()
) -> dict[str, str]:
    """The allowlisted part of the environment (plus `passthrough` names), never a secret."""
    allowed = PASSED_VARIABLES | set(passthrough)
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in allowed or k.startswith("LC_"))
        and k not in SECRET_VARIABLES
        and not k.startswith(("GIT_", "CODYBATCH_", "AIRFLOW", "AWS_"))
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
    command: str,
    cwd: Path,
    timeout: float,
    output_limit: int = 20_000,
    passthrough: Iterable[str] = (),
    *,
    sandbox: Sandbox,
    network: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> CommandResult:
    """Run one shell command in the checkout cwd, confined by `sandbox`, with a timeout.

    Output (stdout+stderr) is kept bounded; the command sees only the allowlisted
    environment plus the `passthrough` names, no TTY and no standard input."""
    sandbox.require()
    env = {
        **clean_environment(passthrough=passthrough),
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        # No __pycache__ in the change, and no stale one hiding an edit made the same second.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    start = time.monotonic()
    if sandbox.kind == "container":
        return _run(["/bin/sh", "-c", command], cwd, env, command, timeout, output_limit, start)
    with confined(["/bin/sh", "-c", command], cwd, network=network, limits=limits) as argv:
        return _run(argv, cwd, environment(env, network), command, timeout, output_limit, start)


def _run(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    command: str,
    timeout: float,
    output_limit: int,
    start: float,
) -> CommandResult:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=orphans.die_with_parent,  # a killed worker takes its step along
    )
    orphans.record_group(proc.pid)  # and whatever the step started, at the next start
    try:
        out, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        # Kill the whole process group (in the sandbox: bwrap, whose death ends its PID
        # namespace): a command's children must not outlive it.
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    except BaseException:
        # The worker is being stopped (cancel, SIGTERM): the command's own group goes too.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    text = out.decode("utf-8", "replace")
    if timed_out:
        text += (
            f"\n[timed out after {timeout:g} s: the command and everything it started were killed]"
        )
    return CommandResult(
        command=command,
        exit_code=None if timed_out else proc.returncode,
        output=truncate(text, output_limit),
        seconds=round(time.monotonic() - start, 3),
        timed_out=timed_out,
    )
