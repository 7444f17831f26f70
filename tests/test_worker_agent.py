"""`codybatch run` with a prompt: the worker drives Claude (the fake Messages API) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from codybatch.cli import main
from codybatch.records import JobStatus, Phase, RepositoryStatus
from codybatch.store.local import LocalStore
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    fake_anthropic,
    finish,
    reply,
    search,
    str_replace,
    view,
)

__all__ = ["fake_anthropic"]


def settings_model() -> str:
    from codybatch.settings import Settings

    return Settings.from_env().model


@pytest.fixture
def job_file(tmp_path: Path, example_repos: list[Path]) -> Path:
    spec = {
        "name": "Replace deprecated oldFunction",
        "prompt": "Replace oldFunction(x) with newFunction(x, {version: 2}).",
        "repositories": [str(p) for p in example_repos],
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _script(api: FakeAnthropic) -> None:
    inv, tax = "/repo/src/invoice.js", "/repo/src/tax.js"
    old_import = "import { oldFunction } from 'legacy-lib';"
    new_import = "import { newFunction } from 'legacy-lib';"
    api.script(
        # billing-service: over several turns
        reply("Let me look.", search("oldFunction")),
        reply(view(inv)),
        reply(
            str_replace(inv, old_import, new_import),
            str_replace(inv, "oldFunction(items)", "newFunction(items, {version: 2})"),
        ),
        reply(str_replace(tax, old_import, new_import)),
        reply(str_replace(tax, "oldFunction(x)", "newFunction(x, {version: 2})")),
        reply(finish(True, "Replaced 2 calls of oldFunction.", "Use newFunction in billing")),
        # web-frontend
        reply(
            str_replace(
                "/repo/app.js",
                "const { oldFunction } = require('legacy-lib');",
                "const { newFunction } = require('legacy-lib');",
            )
        ),
        reply(str_replace("/repo/app.js", "oldFunction(42)", "newFunction(42, {version: 2})")),
        reply(finish(True, "Replaced 1 call.", "Use newFunction in web")),
        # docs-site: nothing to do
        reply(search("oldFunction")),
        reply(finish(False, "No call of oldFunction here.")),
    )


def test_run_with_a_prompt_records_patches_threads_and_usage(
    fake_anthropic: FakeAnthropic,
    job_file: Path,
    codybatch_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _script(fake_anthropic)

    code = main(["run", str(job_file), "--parallel", "1"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert fake_anthropic.remaining == 0
    # Not a terminal: a plain line per phase and turn, with the tokens so far.
    billing_lines = [line.split() for line in out.splitlines() if "billing-service" in line]
    phases = [words[0] for words in billing_lines]
    assert phases[:3] == ["checking", "cloning:", "claude"], out
    turns = [line for line in out.splitlines() if "Claude turn" in line and "billing" in line]
    assert len(turns) == 6, out
    tokens = [int(line.split()[-3].replace(",", "")) for line in turns]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert ["COMPLETED"] in [words[:1] for words in billing_lines]
    store = LocalStore(codybatch_home)
    (job,) = store.list_jobs()
    assert job.status == JobStatus.COMPLETED
    results = {Path(r.repository).name: r for r in store.list_results(job.job_id)}
    billing, web, docs = results["billing-service"], results["web-frontend"], results["docs-site"]
    assert all(r.status == RepositoryStatus.COMPLETED for r in results.values())
    assert (billing.were_changes_necessary, web.were_changes_necessary) == (True, True)
    assert docs.were_changes_necessary is False and not docs.has_patch
    assert billing.summary == "Replaced 2 calls of oldFunction."
    assert billing.pr_title == "Use newFunction in billing"
    assert billing.stop_reason == "finished"
    assert (billing.progress.phase, billing.progress.turn) == (Phase.DONE, 6)
    assert billing.progress.last_tool == "finish: Replaced 2 calls of oldFunction."

    patch = store.get_patch(job.job_id, billing.repository).decode()
    assert "+  return newFunction(items, {version: 2});" in patch
    assert "+export const rate = (x) => newFunction(x, {version: 2}) * 0.2;" in patch
    assert (
        "+console.log(newFunction(42, {version: 2}));"
        in store.get_patch(job.job_id, web.repository).decode()
    )

    thread = store.get_thread(job.job_id, billing.repository)
    assert len(thread["turns"]) == 6
    assert thread["turns"][-1]["response"]["content"][-1]["name"] == "finish"
    # The default model, Sonnet 5.5, thinks: every turn's signed thinking block is stored,
    # and went back unmodified (the fake refuses anything else with a 400).
    assert thread["model"] == settings_model() == "claude-sonnet-5-5"
    for turn in thread["turns"]:
        block = turn["response"]["content"][0]
        assert block["type"] == "thinking" and block["signature"]
    assert job.warnings == []
    u = billing.usage
    assert u.output_tokens > 0 and u.cache_read_input_tokens > 0  # the rolling cache works
    # Sonnet 5.5's published rates per million tokens: $2 input, $10 output, $2.50 cache
    # writes (5 minutes, all the loop uses), $0.10 cache reads.
    expected = (
        u.input_tokens * 2
        + u.cache_creation_input_tokens * 2.5
        + u.cache_read_input_tokens * 0.10
        + u.output_tokens * 10
    ) / 1_000_000
    assert u.usd == pytest.approx(expected, abs=1e-5)
    total = sum(r.usage.usd for r in results.values())
    assert job.usage.usd == pytest.approx(total)
    assert job.usage.total_tokens == sum(r.usage.total_tokens for r in results.values())

    # The key never lands in the store: records, patches or threads.
    for path in codybatch_home.rglob("*"):
        if path.is_file():
            assert fake_anthropic.api_key.encode() not in path.read_bytes(), path

    assert main(["thread", job.job_id, billing.repository]) == 0
    assert json.loads(capsys.readouterr().out)["turns"][0]["response"]["content"]
    assert main(["show", job.job_id]) == 0
    shown = capsys.readouterr().out
    assert "summary: Replaced 2 calls of oldFunction." in shown


def test_a_limit_keeps_the_patch_and_says_which(
    fake_anthropic: FakeAnthropic, tmp_path: Path, example_repos: list[Path], codybatch_home: Path
) -> None:
    inv = "/repo/src/invoice.js"
    fake_anthropic.script(
        reply(str_replace(inv, "oldFunction(items)", "newFunction(items, {version: 2})")),
        reply(view(inv)),
        reply(view(inv)),
    )
    spec = {
        "name": "limited",
        "prompt": "Replace oldFunction.",
        "repositories": [str(example_repos[0])],
        "max_turns": 2,
    }
    path = tmp_path / "limited.yaml"
    path.write_text(yaml.safe_dump(spec))

    assert main(["run", str(path)]) == 0
    store = LocalStore(codybatch_home)
    (job,) = store.list_jobs()
    (result,) = store.list_results(job.job_id)
    assert result.status == RepositoryStatus.COMPLETED
    assert result.stop_reason == "limit_reached"
    assert result.agent.limit == "max_turns"
    assert b"newFunction(items, {version: 2})" in store.get_patch(job.job_id, result.repository)


def _job_with_model(tmp_path: Path, repos: list[Path], model: str | None) -> Path:
    spec = {"name": "m", "prompt": "Replace oldFunction.", "repositories": [str(repos[0])]}
    if model:
        spec["model"] = model
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_retired_model_is_refused_before_any_clone_or_message(
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
    example_repos: list[Path],
    codybatch_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _job_with_model(tmp_path, example_repos, "claude-sonnet-4-5")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model: 'claude-sonnet-4-5' (Claude Sonnet 4.5) was retired on 2026-11-30" in err
    assert "use 'claude-sonnet-5-5'" in err
    assert fake_anthropic.message_requests == []
    assert LocalStore(codybatch_home).list_jobs() == []  # nothing registered, nothing cloned


def test_retired_default_model_names_the_setting(
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
    example_repos: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CODYBATCH_MODEL", "claude-sonnet-4-5")
    assert main(["run", str(_job_with_model(tmp_path, example_repos, None))]) == 2
    assert "CODYBATCH_MODEL: 'claude-sonnet-4-5'" in capsys.readouterr().err
    assert fake_anthropic.message_requests == []


def test_deprecated_model_runs_and_the_job_carries_the_warning(
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
    example_repos: list[Path],
    codybatch_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_anthropic.script(reply(finish(False, "Nothing to change.")))
    path = _job_with_model(tmp_path, example_repos, "claude-haiku-4-5")
    assert main(["run", str(path)]) == 0
    (job,) = LocalStore(codybatch_home).list_jobs()
    (warning,) = job.warnings
    assert "deprecated and retires on 2027-04-01" in warning and "claude-haiku-5-5" in warning
    capsys.readouterr()
    assert main(["show", job.job_id]) == 0
    assert f"warning: {warning}" in capsys.readouterr().out
    assert main(["show", job.job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == [warning]


def test_missing_api_key_is_refused_at_validate(
    fake_anthropic: FakeAnthropic,
    job_file: Path,
    codybatch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert main(["run", str(job_file)]) == 2
    assert "ANTHROPIC_API_KEY is not set" in capsys.readouterr().err
    assert fake_anthropic.requests == [] and LocalStore(codybatch_home).list_jobs() == []
