"""Smoke test of the sandbox benchmark at tiny sizes (no timing checked)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sandbox_bench import run


def test_sandbox_bench_runs_at_tiny_sizes(tmp_path: Path, capsys, bwrap: object) -> None:
    figures = run(tmp_path, sizes=(20, 60), runs=2)
    out = capsys.readouterr().out
    names = [f.name for f in figures]
    assert names[0] == "sandbox start overhead per command"
    assert sum("first request with instruction files" in n for n in names) == 3
    assert all(f.line() in out for f in figures)
    assert not list(tmp_path.glob("*/AGENTS.md"))  # the instruction files were removed
