"""Smoke test of the store benchmark (tiny sizes, no timings checked): keeps it from rotting."""

from __future__ import annotations

from pathlib import Path

from benchmarks.store_bench import queries, run, seed


def test_the_seeded_store_answers_every_list_query(tmp_path: Path) -> None:
    store = seed(tmp_path / "s", 600)
    answers = {name: fn() for name, fn in queries(store).items()}
    assert len(answers["jobs page (25 newest)"]) == 26
    assert [j.job_id for j in answers["a campaign's jobs"]][:2] == ["job-000570", "job-000540"]
    assert sum(answers["campaigns and their counts"]["campaign-0"].values()) == 20
    assert sum(len(results) for _, results in answers["pull requests to track"]) == 20


def test_the_benchmark_reports_one_figure_per_query(tmp_path: Path) -> None:
    figures = run(tmp_path, small=100, large=200, runs=2)
    assert len(figures) == 6 and all(f.name.endswith("p95 growth") for f in figures)
