"""Sandbox figures (issue 16): what bubblewrap costs per command, and a flat first turn.

- the start overhead of a sandboxed command over the same command run bare (the shell
  module's own path with CODYBATCH_SANDBOX=container): target under 50 ms
- the first request's size with instruction files (AGENTS.md, CLAUDE.md) present and the
  shell offered, from 100 to 10,000 files: within 1.2x, and bounded
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import (
    BENCH_DIR,
    Figure,
    at_most,
    generate_repo,
    git,
    median,
    note,
    report,
    spread,
)
from codybatch.agent import run_agent
from codybatch.sandbox import Sandbox, detect
from codybatch.settings import Settings
from codybatch.shell import run_command
from codybatch.spec import JobSpec
from tests.fakes.anthropic_server import FakeAnthropic, finish, reply

SIZES = (100, 1_000, 10_000)
OVERHEAD_LIMIT_MS = 50.0
FLAT_RATIO = 1.2
FIRST_REQUEST_LIMIT = 42_000  # bytes: the agent bench's 32 KB plus the 8,000-character budget
INSTRUCTIONS = {
    "AGENTS.md": "# Agents\n\nRun `make test` before finishing. Use 4 spaces.\n" * 120,
    "CLAUDE.md": "# Claude\n\nNever edit generated files by hand.\n" * 120,
}


def overhead(runs: int) -> tuple[list[float], list[float]]:
    """Seconds of `true` sandboxed and bare, `runs` times each, interleaved."""
    sandboxed, bare = [], []
    with tempfile.TemporaryDirectory(prefix="codybatch-bench-") as tmp:
        checkout = Path(tmp)
        git("init", "-q", str(checkout))
        for _ in range(runs):
            for sandbox, out in ((detect(), sandboxed), (Sandbox("container"), bare)):
                done = run_command("true", checkout, timeout=30, sandbox=sandbox)
                if not done.ok:
                    raise RuntimeError(f"`true` failed: {done.output}")
                out.append(done.seconds)
    return sandboxed, bare


def first_request(repo: Path, fake: FakeAnthropic, settings: Settings) -> int:
    """Bytes of the first request of a one-turn session on repo with instruction files."""
    for name, text in INSTRUCTIONS.items():
        (repo / name).write_text(text)
    start = len(fake.answered)
    fake.script(reply(finish(False, "Nothing to do.")))
    spec = JobSpec(name="bench", repositories=(str(repo),), prompt="Rename `function_1_3`.")
    try:
        outcome = run_agent(repo, spec, settings, lambda thread: None)
    finally:
        for name in INSTRUCTIONS:
            (repo / name).unlink(missing_ok=True)
    if outcome.stop_reason != "finished" or not (outcome.shell or {}).get("offered"):
        raise RuntimeError(f"the session did not finish with a shell: {outcome}")
    if outcome.instructions is None or len(outcome.instructions["files"]) != 2:
        raise RuntimeError(f"the instruction files were not used: {outcome.instructions}")
    return len(fake.answered[start].raw)


def run(bench_dir: Path = BENCH_DIR, sizes: Sequence[int] = SIZES, runs: int = 30) -> list[Figure]:
    figures: list[Figure] = []
    print("Sandbox (bubblewrap)", flush=True)
    sandbox = detect()
    if sandbox.kind != "bwrap":
        note(f"no bubblewrap: {sandbox.reason}")
        return [report(Figure("sandbox start overhead", "not measured", "bwrap", False), figures)]
    sandboxed, bare = overhead(runs)
    extra = (median(sandboxed) - median(bare)) * 1000
    report(at_most("sandbox start overhead per command", extra, OVERHEAD_LIMIT_MS, " ms",
                   "over a bare subprocess"), figures)  # fmt: skip
    note(f"sandboxed `true`: {spread(sandboxed)}; bare: {spread(bare)}")
    sizes_seen: dict[int, int] = {}
    with FakeAnthropic() as fake:
        settings = Settings(anthropic_api_key=fake.api_key, anthropic_base_url=fake.url)
        for files in sizes:
            repo = generate_repo(bench_dir / f"agent-{files}", files)
            sizes_seen[files] = first_request(repo, fake, settings)
            report(
                Figure(
                    f"first request with instruction files and the shell, {files:,} files",
                    f"{sizes_seen[files]:,} bytes",
                    f"<= {FIRST_REQUEST_LIMIT:,} bytes",
                    sizes_seen[files] <= FIRST_REQUEST_LIMIT,
                ),
                figures,
            )
    largest, smallest = sizes_seen[max(sizes)], sizes_seen[min(sizes)]
    report(
        at_most(
            f"first request with instruction files, {max(sizes):,} vs {min(sizes):,} files",
            largest / smallest,
            FLAT_RATIO,
        ),
        figures,
    )
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="commands timed, each way")
    args = parser.parse_args(argv or [])
    return run(runs=args.runs)
