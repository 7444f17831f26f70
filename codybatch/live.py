"""What `codybatch run` shows while its workers run: a live table on a terminal, plain lines
otherwise (a log file, CI)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from codybatch.records import Phase, RepositoryResult, RepositoryStatus, utcnow

REFRESHES_PER_SECOND = 2


def describe(result: RepositoryResult) -> str:
    """The phase in words: `Claude turn 7`, `steps: step 2 of 3: make`, `COMPLETED`."""
    p = result.progress
    if result.status != RepositoryStatus.RUNNING:
        return result.status.value
    if p.phase == Phase.CLAUDE and p.turn:
        return f"Claude turn {p.turn}"
    return f"{p.phase.value}: {p.detail}" if p.detail else p.phase.value


def _elapsed(result: RepositoryResult) -> str:
    if result.started_at is None:
        return ""
    end = result.finished_at if result.finished else utcnow()
    seconds = max(0, int((end - result.started_at).total_seconds()))
    return f"{seconds // 60}m {seconds % 60:02d}s"


def _usage(result: RepositoryResult) -> tuple[str, str]:
    usage = result.progress.usage if result.status == RepositoryStatus.RUNNING else result.usage
    return f"{usage.total_tokens:,}", f"${usage.usd:.4f}"


class PlainLines:
    """One line per change of a repository's phase (or turn), and one when it finishes."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[Any, ...]] = {}

    def update(self, result: RepositoryResult) -> None:
        key = (result.status, result.progress.phase, result.progress.turn)
        with self.lock:
            if self.seen.get(result.repository) == key:
                return
            self.seen[result.repository] = key
            if result.finished:
                line = f"  {result.status.value:<9} {result.repository}"
            else:
                tokens, usd = _usage(result)
                line = f"  {describe(result):<9} {result.repository}  {tokens} tokens {usd}"
            print(line, file=self.stream, flush=True)


class LiveTable:
    """A table redrawn in place, one row per repository (rich)."""

    def __init__(self, repositories: list[str], stream: IO[str]):
        from rich.console import Console
        from rich.live import Live

        self.rows: dict[str, RepositoryResult | None] = dict.fromkeys(repositories)
        self.lock = threading.Lock()
        self.live = Live(
            get_renderable=self.render,
            console=Console(file=stream),
            refresh_per_second=REFRESHES_PER_SECOND,
            transient=False,
        )

    def render(self) -> Any:
        from rich.table import Table

        table = Table(expand=True)
        for name, style in (("repository", "bold"), ("status", ""), ("elapsed", "")):
            table.add_column(name, style=style, overflow="fold")
        for name in ("tokens", "cost"):
            table.add_column(name, justify="right")
        table.add_column("last tool", overflow="ellipsis", no_wrap=True, max_width=60)
        with self.lock:
            rows = list(self.rows.items())
        for repository, result in rows:
            if result is None:
                table.add_row(repository, "queued", "", "", "", "")
                continue
            tokens, usd = _usage(result)
            tool = result.progress.last_tool if not result.finished else ""
            table.add_row(repository, describe(result), _elapsed(result), tokens, usd, tool or "")
        return table

    def update(self, result: RepositoryResult) -> None:
        with self.lock:
            self.rows[result.repository] = result


@contextmanager
def job_display(repositories: list[str], stream: IO[str]) -> Iterator[PlainLines | LiveTable]:
    """The display for a run: `update(result)` from any worker thread."""
    if not stream.isatty():
        yield PlainLines(stream)
        return
    table = LiveTable(repositories, stream)
    with table.live:
        yield table
