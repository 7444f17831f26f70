"""Prices from genai-prices, operator overrides and unknown models."""

from __future__ import annotations

import pytest
from genai_prices import Usage as PricedUsage
from genai_prices import calc_price

from codybatch.agent.models import model_price
from codybatch.agent.pricing import CONSERVATIVE, cost, parse_overrides, price_for, usage_of
from codybatch.settings import Settings

# One response using every billed kind of token.
USAGE = {
    "input_tokens": 1_000,
    "output_tokens": 2_000,
    "cache_creation_input_tokens": 7_000,
    "cache_read_input_tokens": 5_000,
    "cache_creation": {"ephemeral_5m_input_tokens": 3_000, "ephemeral_1h_input_tokens": 4_000},
}


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        # Anthropic's published rates per million tokens: input, output, 5-minute cache
        # write, 1-hour cache write (2x input), cache read.
        ("claude-sonnet-5-5", (2, 10, 2.5, 4, 0.10)),
        ("claude-opus-5-5", (4, 20, 5, 8, 0.20)),
    ],
)
def test_cost_is_the_models_own_rate_for_every_token_kind(model: str, rates: tuple) -> None:
    price = price_for(model)
    assert price.known and price.source == "genai-prices"
    counts = (1_000, 2_000, 3_000, 4_000, 5_000)
    expected = sum(n * r for n, r in zip(counts, rates, strict=True)) / 1_000_000
    assert cost(USAGE, price) == pytest.approx(expected, abs=1e-9)
    usage = usage_of(USAGE, price)
    assert (usage.input_tokens, usage.output_tokens) == (1_000, 2_000)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (7_000, 5_000)


def test_tiered_prices_come_from_genai_prices_itself() -> None:
    """Haiku 5.5 charges more above 100k input tokens: genai-prices' own figure is used."""
    big = {**USAGE, "input_tokens": 150_000}
    expected = calc_price(
        PricedUsage(
            input_tokens=150_000 + 7_000 + 5_000,
            output_tokens=2_000,
            cache_write_tokens=7_000,
            cache_write_5m_tokens=3_000,
            cache_write_1h_tokens=4_000,
            cache_read_tokens=5_000,
        ),
        "claude-haiku-5-5",
        provider_id="anthropic",
    ).total_price
    price = price_for("claude-haiku-5-5")
    assert cost(big, price) == pytest.approx(float(expected), abs=1e-6)
    assert cost(big, price) > cost(USAGE, price) * 10  # the higher tier applies


def test_bedrock_prices_follow_the_inference_profile() -> None:
    regional = model_price(
        Settings(claude_provider="bedrock", aws_region="eu-west-1"), "claude-sonnet-5-5"
    )
    global_ = model_price(
        Settings(claude_provider="bedrock", aws_region="sa-east-1"), "claude-sonnet-5-5"
    )
    assert regional.model == "eu.anthropic.claude-sonnet-5-5" and regional.provider == "aws"
    assert (regional.input, global_.input) == (2.2, 2.0)  # regional profiles cost 10% more


def test_unknown_model_is_flagged_and_priced_at_the_stated_conservative_rate() -> None:
    unknown = price_for("claude-unreleased-7")
    assert not unknown.known and unknown.source == "unknown"
    assert unknown.to_dict()["known"] is False
    assert (unknown.input, unknown.output) == (CONSERVATIVE["input"], CONSERVATIVE["output"])
    assert cost({"input_tokens": 1_000_000, "output_tokens": 0}, unknown) == CONSERVATIVE["input"]


def test_operator_override_for_negotiated_rates() -> None:
    settings = Settings(prices='{"claude-sonnet-5-5": {"input": 1.6, "output": 8}}')
    price = model_price(settings, "claude-sonnet-5-5")
    assert price.source == "CODYBATCH_PRICES" and price.known
    assert (price.input, price.output, price.cache_read) == (1.6, 8.0, 0.1)  # the rest listed
    assert cost(USAGE, price) == pytest.approx(
        (1_000 * 1.6 + 2_000 * 8 + 3_000 * 2.5 + 4_000 * 4 + 5_000 * 0.1) / 1e6
    )
    made_up = model_price(Settings(prices='{"my-model": {"input": 1, "output": 2}}'), "my-model")
    assert made_up.known and (made_up.input, made_up.output) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "not valid JSON"),
        ("[1]", "JSON object of models"),
        ('{"m": {"inptu": 1}}', "give USD per million tokens for input"),
        ('{"m": {"input": -1}}', "must be a number >= 0"),
    ],
)
def test_bad_overrides_say_the_fix(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_overrides(raw)
