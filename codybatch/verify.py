"""The verify command: run after a change, its outcome and the tail of its output recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codybatch.redact import redact_text
from codybatch.sandbox import detect
from codybatch.settings import Settings
from codybatch.shell import run_command

# The end of a failing check's output is where the error is.
VERIFY_TAIL = 4_000


def run_verify(
    command: str, checkout: Path, settings: Settings, network: bool = False
) -> dict[str, Any]:
    """Run the verify command in the sandboxed checkout; return its record (output redacted,
    tail kept)."""
    result = run_command(
        command,
        checkout,
        timeout=settings.step_timeout,
        passthrough=settings.step_env,
        sandbox=detect(settings.sandbox),
        network=network,
    )
    tail = redact_text(result.output, settings.secrets)
    if len(tail) > VERIFY_TAIL:
        tail = f"[... {len(tail) - VERIFY_TAIL:,} characters elided ...]\n" + tail[-VERIFY_TAIL:]
    return {
        "command": command,
        "exit_code": result.exit_code,
        "passed": result.ok,
        "timed_out": result.timed_out,
        "seconds": result.seconds,
        "output": tail,
    }
