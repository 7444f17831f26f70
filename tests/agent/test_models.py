"""Model facts from the Models API, effort and thinking, against the fake's current generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest

from codybatch.agent.models import (
    CONSERVATIVE_MAX_TOKENS,
    NON_STREAMING_MAX_TOKENS,
    check_model,
)
from codybatch.agent.pricing import CONSERVATIVE
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    finish,
    model_entry,
    redacted_thinking,
    reply,
    str_replace,
    thinking,
    view,
)
from tests.helpers import make_repo

REFUSED = ("temperature", "top_p", "top_k", "thinking", "tool_choice")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "checkout", {"app.py": "def old():\n    return 1\n"})


def spec(
    model: str | None = None, effort: str | None = None, prompt: str = "Rename old."
) -> JobSpec:
    return JobSpec(name="j", repositories=("/x",), prompt=prompt, model=model, effort=effort)


def test_default_model_thinks_and_gets_its_thinking_back(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(
        reply(thinking("The function is in app.py."), redacted_thinking(), view("/repo/app.py")),
        reply(str_replace("app.py", "def old():", "def new():")),
        reply(finish(True, "Renamed old to new.", "Rename old to new")),
    )
    run = agent(checkout)
    assert run.outcome.stop_reason == "finished"
    assert (checkout / "app.py").read_text().startswith("def new():")
    requests = api.answered
    for body in (r.body for r in requests):
        assert body["model"] == "claude-sonnet-5-5"
        assert body["output_config"] == {"effort": "medium"}  # CODYBATCH_EFFORT's default
        assert body["max_tokens"] == NON_STREAMING_MAX_TOKENS  # below the model's 128,000
        assert not set(body) & set(REFUSED)
        assert body["messages"][-1]["role"] == "user"  # no prefill
    # Turn 1's thinking went back exactly as received, signature and opaque data included.
    first = run.thread["turns"][0]["response"]["content"]
    assert [b["type"] for b in first] == ["thinking", "redacted_thinking", "tool_use"]
    assert first[0]["thinking"] == "The function is in app.py." and first[0]["signature"]
    sent_back = requests[1].body["messages"][1]["content"]
    assert sent_back[:2] == first[:2]
    assert run.thread["model_facts"]["lifecycle"] == "active"
    assert run.thread["effort"] == "medium" and run.thread["notes"] == []
    assert run.outcome.price_known is True


def test_deprecated_model_runs_with_a_note_and_no_effort(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.script(reply(finish(False, "Nothing to do.")))
    run = agent(checkout, model="claude-haiku-4-5")
    assert run.outcome.stop_reason == "finished"
    note = run.thread["notes"][0]
    assert "deprecated and retires on 2027-04-01" in note and "'claude-haiku-5-5'" in note
    assert "output_config" not in api.answered[0].body  # the model has no effort setting


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("claude-sonnet-4-5", ["retired on 2026-11-30", "use 'claude-sonnet-5-5'"]),
        ("claude-sonet-5-5", ["not a model the API knows", "claude-sonnet-5-5, claude-haiku-5-5"]),
    ],
)
def test_retired_or_unknown_model_is_never_called(
    api: FakeAnthropic, agent, checkout: Path, model: str, words: list[str]
) -> None:
    run = agent(checkout, model=model)
    assert run.outcome.stop_reason == "error"
    for word in words:
        assert word in run.outcome.error
    assert api.message_requests == []


def test_unreadable_catalogue_means_conservative_defaults(
    api: FakeAnthropic, agent, checkout: Path
) -> None:
    api.models_down = True
    api.script(reply(finish(False, "x")))
    run = agent(checkout)
    assert run.outcome.stop_reason == "finished"
    body = api.answered[0].body
    assert body["max_tokens"] == CONSERVATIVE_MAX_TOKENS and "output_config" not in body
    assert "was not checked (the Models API answered 503" in run.thread["notes"][0]


def test_model_without_a_known_price(api: FakeAnthropic, agent, checkout: Path) -> None:
    api.models.insert(
        0, model_entry("claude-nova-6", "Claude Nova 6", "sonnet", "2026-12-01", max_tokens=4_096)
    )
    usage = {"input_tokens": 1_000_000, "output_tokens": 0, "cache_creation_input_tokens": 0}
    api.script(reply(finish(False, "x"), usage=usage))
    run = agent(checkout, model="claude-nova-6")
    assert api.answered[0].body["max_tokens"] == 4_096  # the model's own cap
    assert run.outcome.price_known is False
    assert run.outcome.usage.usd == CONSERVATIVE["input"]
    assert "no price known for model 'claude-nova-6'" in run.thread["notes"][0]
    assert run.thread["price_per_million"]["known"] is False


@pytest.mark.parametrize(
    ("model", "effort", "env_effort", "error"),
    [
        ("claude-haiku-5-5", "xhigh", "medium", "effort: 'xhigh' is not an effort level model"),
        ("claude-haiku-5-5", None, "max", "CODYBATCH_EFFORT: 'max' is not an effort level"),
        ("claude-haiku-4-5", "low", "medium", "effort: model 'claude-haiku-4-5' has no effort"),
        ("claude-haiku-4-5", None, "medium", None),  # the default is simply not sent
        ("claude-opus-5-5", "max", "medium", None),
    ],
)
def test_effort_the_model_does_not_support_is_a_field_error(
    api: FakeAnthropic, model: str, effort: str | None, env_effort: str, error: str | None
) -> None:
    settings = Settings(
        anthropic_api_key=api.api_key, anthropic_base_url=api.url, effort=env_effort
    )
    check = check_model(spec(model, effort), settings)
    if error is None:
        assert check.errors == []
    else:
        assert len(check.errors) == 1 and str(check.errors[0]).startswith(error)


def test_missing_api_key_is_refused_before_any_request(api: FakeAnthropic) -> None:
    check = check_model(spec(), Settings(anthropic_base_url=api.url))
    assert [e.field for e in check.errors] == ["ANTHROPIC_API_KEY"]
    assert "CODYBATCH_CLAUDE_PROVIDER=bedrock" in check.errors[0].message
    assert api.requests == []
    assert check_model(spec(prompt=""), Settings()).errors == []  # steps only: no Claude


def test_model_from_settings_names_the_setting(api: FakeAnthropic) -> None:
    settings = Settings(
        anthropic_api_key=api.api_key, anthropic_base_url=api.url, model="claude-sonnet-4-5"
    )
    check = check_model(spec(), settings)
    assert check.errors[0].field == "CODYBATCH_MODEL"
    # One lookup of the model, one list for its replacement; the next check is cached.
    check_model(spec(), settings)
    assert [r.path.split("?")[0] for r in api.model_lookups] == [
        "/v1/models/claude-sonnet-4-5",
        "/v1/models",
    ]


# -- the fake refuses what the current models refuse ------------------------------------


def _create(api: FakeAnthropic, **kwargs: Any) -> Any:
    client = anthropic.Anthropic(api_key=api.api_key, base_url=api.url, max_retries=0)
    args: dict[str, Any] = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 1_000,
        "messages": [{"role": "user", "content": "hi"}],
        **kwargs,
    }
    return client.messages.create(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 2_000}},
        {"thinking": {"type": "disabled"}},
        # SDK 2.15 no longer offers the sampling parameters: sent as the raw field.
        {"extra_body": {"temperature": 0.2}},
        {"extra_body": {"top_p": 0.9}},
        {"extra_body": {"top_k": 5}},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Su"}]},
        {
            "tool_choice": {"type": "any"},
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        },
        {"output_config": {"effort": "xhigh"}, "model": "claude-haiku-5-5"},
        {"max_tokens": 200_000, "timeout": 30},  # the model's cap is 128,000
    ],
)
def test_fake_refuses_the_settings_current_models_refuse(api: FakeAnthropic, kwargs: dict) -> None:
    with pytest.raises(anthropic.BadRequestError):
        _create(api, **kwargs)


def test_fake_404s_a_retired_model_and_checks_thinking_signatures(api: FakeAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        _create(api, model="claude-sonnet-4-5")
    tool = {"name": "t", "input_schema": {"type": "object"}}
    api.script(reply(thinking("plan"), {"type": "tool_use", "name": "t", "input": {}}))
    message = _create(api, tools=[tool])
    blocks = [b.to_dict() for b in message.content]
    result = {"type": "tool_result", "tool_use_id": blocks[1]["id"], "content": "ok"}

    def follow_up(assistant: list[dict[str, Any]], model: str = "claude-sonnet-5-5") -> Any:
        messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [result]},
        ]
        return _create(api, tools=[tool], messages=messages, model=model)

    modified = [{**blocks[0], "thinking": "plan!"}, blocks[1]]
    for assistant, model in (
        (modified, "claude-sonnet-5-5"),
        (blocks[1:], "claude-sonnet-5-5"),
        (blocks, "claude-opus-5-5"),
    ):
        with pytest.raises(anthropic.BadRequestError):
            follow_up(assistant, model)
    api.script(reply("done"))
    assert follow_up(blocks).stop_reason == "end_turn"


def test_batch_runner_without_the_key_here_leaves_the_check_to_the_workers(
    api: FakeAnthropic,
) -> None:
    settings = Settings(runner="batch", anthropic_base_url=api.url)
    check = check_model(spec(), settings)
    assert check.errors == [] and "given to the Batch workers only" in check.warnings[0]
    assert api.requests == []
