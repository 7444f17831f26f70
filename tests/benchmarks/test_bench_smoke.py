"""Smoke test of the benchmark code (tiny sizes, no timings checked): keeps it from rotting."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from benchmarks import Figure, at_most, generate_repo, git
from benchmarks.airflow_bench import (
    JOB_DAG,
    MINIMAL_DAG,
    SHAPED_DAG,
    TRIVIAL_DAGS,
    prepare,
    stage_spans,
)
from benchmarks.skeleton_bench import Sizes, all_repos_config, run


def test_figure_lines_show_value_target_and_verdict():
    assert at_most("worker overhead", 1.21, 1.5, detail="raw git").line() == (
        "worker overhead: 1.21x raw git (target <= 1.5x)  OK"
    )
    assert at_most("peak", 300, 250, unit=" MB").line().endswith("(target <= 250 MB)  MISSED")
    assert Figure("info", "3 s").line() == "info: 3 s"


def test_generated_history_and_squashed_repos_have_the_same_tree(tmp_path: Path):
    long = generate_repo(tmp_path / "long", files=30, commits=25)
    short = generate_repo(tmp_path / "short", files=30, commits=25, squash=True)
    tree = "main^{tree}"
    assert git("rev-parse", tree, cwd=long) == git("rev-parse", tree, cwd=short)
    assert git("rev-list", "--count", "main", cwd=long).strip() == b"25"
    assert git("rev-list", "--count", "main", cwd=short).strip() == b"1"
    assert (short / "src/pkg000/module00003.py").is_file()  # a working tree, too


def test_skeleton_bench_runs_at_tiny_sizes(tmp_path: Path, capsys):
    figures = run(tmp_path, Sizes.tiny(), all_repos=False)
    out = capsys.readouterr().out
    names = [f.name for f in figures]
    assert any(n.startswith("worker overhead") for n in names)
    assert any(n.startswith("worker peak memory") for n in names)
    assert any(n.startswith("clone time") for n in names)
    # Not a timing: the shell-step CLI and worker never import airflow, boto3 or anthropic.
    imports = [f for f in figures if f.name.startswith("heavy modules")]
    assert len(imports) == 3 and all(f.ok for f in imports), out
    assert all(f.target for f in figures)
    for figure in figures:
        assert figure.line() in out


def test_all_repos_config_is_private_and_local(tmp_path: Path):
    repo = generate_repo(tmp_path / "repos" / "one", files=3)
    config = all_repos_config(tmp_path / "ar", [repo])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # all-repos refuses anything wider
    settings = json.loads(config.read_text())
    assert settings["push"] == "all_repos.push.readonly"
    repos = json.loads(Path(settings["source_settings"]["filename"]).read_text())
    assert repos == {"one": str(repo)}


def test_airflow_bench_dags_parse(tmp_path: Path):
    prepare(tmp_path)
    assert (tmp_path / "dags" / f"{JOB_DAG}.py").is_file()
    assert (tmp_path / "dags" / "bench_mapped.py").read_text() == TRIVIAL_DAGS
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(tmp_path / "dags"))
    assert not bag.import_errors
    dags = bag.dags
    assert set(dags) == {JOB_DAG, MINIMAL_DAG, SHAPED_DAG}
    assert set(dags[SHAPED_DAG].task_ids) == {"validate", "register", "process", "finalize"}


def test_stage_spans_cover_the_run():
    run_record = {"queued_at": "2026-01-01T00:00:00Z", "end_date": "2026-01-01T00:00:10Z"}
    tis = [
        {"task_id": "a", "start_date": "2026-01-01T00:00:01Z", "end_date": "2026-01-01T00:00:02Z"},
        {"task_id": "b", "start_date": "2026-01-01T00:00:03Z", "end_date": "2026-01-01T00:00:05Z"},
        {"task_id": "b", "start_date": "2026-01-01T00:00:04Z", "end_date": "2026-01-01T00:00:06Z"},
    ]
    assert stage_spans(run_record, tis) == {"a": 1.0, "b": 3.0, "(scheduling)": 6.0}


def test_agent_bench_prices_one_session_per_current_model():
    from benchmarks.agent_bench import MODELS, repository_costs

    call = {
        "input_tokens": 100,
        "output_tokens": 1_000,
        "cache_creation_input_tokens": 1_000,
        "cache_read_input_tokens": 20_000,
    }
    costs = repository_costs([call, call])
    assert set(costs) == set(MODELS)
    sonnet_cached, sonnet_plain = costs["claude-sonnet-5-5"]
    # Sonnet 5.5: $2 input, $10 output, $2.50 cache writes, $0.10 cache reads per million.
    assert sonnet_cached == pytest.approx(
        2 * (100 * 2 + 1_000 * 10 + 1_000 * 2.5 + 20_000 * 0.1) / 1e6
    )
    assert sonnet_plain == pytest.approx(2 * (21_100 * 2 + 1_000 * 10) / 1e6)
    assert costs["claude-opus-5-5"][0] == pytest.approx(2 * sonnet_cached)  # twice Sonnet's rates
