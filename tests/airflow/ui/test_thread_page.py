"""A failed repository's thread page: the error and what led to it first, set-up collapsed."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from codybatch.cli import main
from codybatch.records import Phase, RepositoryStatus
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    bad_request,
    fake_anthropic,
    reply,
    search,
    view,
)
from tests.helpers import make_repo

pytestmark = pytest.mark.airflow
__all__ = ["fake_anthropic"]

REFUSAL = "prompt is too long: 250000 tokens, 200000 maximum"


@pytest.fixture
def ui(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    return client


def _failed_run(tmp_path: Path, store, name: str) -> tuple[str, str]:
    """A real `codybatch run` whose Claude session ends in an API error: (job id, repository)."""
    repo = make_repo(tmp_path / name, {"src/app.py": "print(oldFunction())\n"})
    job_file = tmp_path / f"{name}.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {"name": name, "prompt": "Replace oldFunction.", "repositories": [str(repo)]}
        )
    )
    main(["run", str(job_file), "--parallel", "1"])
    (job,) = [j for j in store.list_jobs() if j.name == name]
    (result,) = store.list_results(job.job_id)
    assert result.status == RepositoryStatus.FAILED and result.failed_phase == Phase.CLAUDE
    return job.job_id, result.repository


def _page(ui, job_id: str, repository: str) -> str:
    page = ui.get(f"/codybatch/jobs/{job_id}/thread/{quote(repository, safe='')}")
    assert page.status_code == 200
    return page.text


def test_a_zero_turn_failure_shows_the_error_first(
    ui, store, tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(bad_request(REFUSAL))
    page = _page(ui, *_failed_run(tmp_path, store, "never-answered"))

    happened = page.index('<section class="happened"')
    assert page.index(REFUSAL) > happened  # the error, in the first section after the title
    assert "Failed while</dt><dd>Claude" in page
    assert "none: Claude was never answered" in page
    # The system prompt and the tools are at the end, collapsed, not a wall of raw JSON.
    system = re.search(r'<details class="block system">.*?</details>', page, re.S)
    tools = re.search(r'<details class="block tools"><summary>Tool definitions · ([^<]*)<', page)
    assert system and "You are" in system.group(0) and system.start() > happened
    assert tools and "finish" in tools.group(1) and tools.start() > happened
    outside = page[: system.start()]
    assert "input_schema" not in page and '"properties"' not in outside


def test_a_failure_after_some_turns_lists_the_last_tool_calls(
    ui, store, tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        reply("Let me look.", search("oldFunction")),
        reply(view("/repo/src/app.py")),
        bad_request(REFUSAL),
    )
    page = _page(ui, *_failed_run(tmp_path, store, "answered-twice"))

    top = page[page.index('<section class="happened"') : page.index("</section>")]
    assert REFUSAL in top
    calls = re.findall(r'<li><a href="#turn-(\d)">turn \d</a> <code>(\w+)</code>', top)
    assert [(int(n), name) for n, name in calls] == [
        (1, "search"),
        (2, "str_replace_based_edit_tool"),
    ]
    assert page.index("</section>") < page.index('id="turn-1"') < page.index("block system")


def test_a_finished_thread_has_no_failure_box(ui, store) -> None:
    from tests.airflow.ui.seed import seed_job

    job = seed_job(store)
    page = _page(ui, job.job_id, "github.com/acme/billing")
    assert 'class="happened"' not in page and "You are Cody Batch." in page
