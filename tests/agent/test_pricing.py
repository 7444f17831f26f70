"""Prices per model and the cost of a response's usage."""

from __future__ import annotations

import pytest

from codybatch.agent.pricing import cost, normalise_model, price_for, usage_of


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ],
)
def test_model_names_normalise(model: str, name: str) -> None:
    assert normalise_model(model) == name


def test_known_prices() -> None:
    sonnet = price_for("claude-sonnet-4-5-20250929")
    assert (sonnet.input, sonnet.output, sonnet.known) == (3.0, 15.0, True)
    assert sonnet.cache_write == pytest.approx(3.75) and sonnet.cache_read == pytest.approx(0.3)
    assert (price_for("claude-opus-4-1").input, price_for("claude-opus-4-1").output) == (15, 75)
    assert (price_for("claude-opus-4-5").input, price_for("claude-opus-4-5").output) == (5, 25)
    assert (price_for("claude-haiku-4-5").input, price_for("claude-haiku-4-5").output) == (1, 5)


def test_unknown_model_costs_the_most() -> None:
    unknown = price_for("claude-unreleased-7")
    assert not unknown.known
    assert (unknown.input, unknown.output) == (15.0, 75.0)


def test_cost_prices_every_kind_of_token() -> None:
    price = price_for("claude-sonnet-4-5")
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
        "cache_creation_input_tokens": 1_000_000,
        "cache_read_input_tokens": 1_000_000,
    }
    assert cost(usage, price) == pytest.approx(3 + 15 + 3.75 + 0.3)
    one_hour = {
        **usage,
        "cache_creation": {"ephemeral_1h_input_tokens": 1_000_000, "ephemeral_5m_input_tokens": 0},
    }
    assert cost(one_hour, price) == pytest.approx(3 + 15 + 6 + 0.3)
    totals = usage_of(usage, price)
    assert totals.total_tokens == 4_000_000 and totals.usd == pytest.approx(22.05)
