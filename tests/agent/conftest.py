"""Fixtures for the agent tests: the fake Anthropic API and a runner that checks for leaks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codybatch.agent import AgentOutcome, run_agent
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic  # noqa: F401 (fixture)


@pytest.fixture
def api(request: pytest.FixtureRequest) -> FakeAnthropic:
    """The fake Messages API, with ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY pointing at it."""
    return request.getfixturevalue("fake_anthropic")


@dataclass
class AgentRun:
    outcome: AgentOutcome
    threads: list[dict[str, Any]]

    @property
    def thread(self) -> dict[str, Any]:
        return self.threads[-1]


@pytest.fixture
def agent(api: FakeAnthropic) -> Iterator[Callable[..., AgentRun]]:
    """run(checkout, prompt, **spec fields) -> AgentRun; afterwards no secret may appear."""
    runs: list[AgentRun] = []

    def run(
        checkout: Path,
        prompt: str = "Rename old_function to new_function.",
        client: Any = None,
        **fields: Any,
    ) -> AgentRun:
        spec = JobSpec(name="test job", repositories=(str(checkout),), prompt=prompt, **fields)
        threads: list[dict[str, Any]] = []
        outcome = run_agent(checkout, spec, Settings.from_env(), threads.append, client=client)
        result = AgentRun(outcome, threads)
        runs.append(result)
        return result

    yield run
    for result in runs:
        # Everything handed out must be JSON and free of the key.
        blob = json.dumps(result.threads) + json.dumps(result.outcome.to_dict())
        assert api.api_key not in blob
        assert api.api_key[:20] not in blob
