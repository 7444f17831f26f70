"""Prices (USD per million tokens) from genai-prices or an operator's override, and costs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Any

from genai_prices import Usage as PricedUsage
from genai_prices import calc_price, extract_usage

from codybatch.records import Usage

RATES = ("input", "output", "cache_write", "cache_write_1h", "cache_read")
# For a model genai-prices does not know and no override names: the highest list price
# Anthropic has charged (Claude Opus 4 and 4.1), so max_usd errs on the safe side.
CONSERVATIVE = {
    "input": 15.0,
    "output": 75.0,
    "cache_write": 18.75,
    "cache_write_1h": 30.0,
    "cache_read": 1.5,
}
GENAI_PRICES, OVERRIDE, UNKNOWN = "genai-prices", "CODYBATCH_PRICES", "unknown"


@dataclass(frozen=True)
class Price:
    """Rates of one model with one provider, USD per million tokens, and where they came from."""

    model: str
    provider: str  # a genai-prices provider id: anthropic or aws (Bedrock)
    input: float
    output: float
    cache_write: float  # 5-minute cache writes
    cache_write_1h: float
    cache_read: float
    source: str = GENAI_PRICES  # genai-prices | CODYBATCH_PRICES | unknown

    @property
    def known(self) -> bool:
        return self.source != UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "known": self.known}


def parse_overrides(raw: str) -> dict[str, dict[str, float]]:
    """CODYBATCH_PRICES: {"model": {"input": 1.6, "output": 8, ...}}; ValueError says the fix."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg}): write {_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ValueError(f"must be a JSON object of models: write {_EXAMPLE}")
    overrides: dict[str, dict[str, float]] = {}
    for model, rates in data.items():
        if not isinstance(rates, dict) or not rates or set(rates) - set(RATES):
            raise ValueError(f"{model!r}: give USD per million tokens for {', '.join(RATES)}")
        for name, value in rates.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{model!r}.{name}: must be a number >= 0 (USD per million)")
        overrides[model] = {k: float(v) for k, v in rates.items()}
    return overrides


_EXAMPLE = '{"claude-sonnet-5-5": {"input": 1.6, "output": 8, "cache_read": 0.08}}'


def price_for(
    model: str, provider: str = "anthropic", override: dict[str, float] | None = None
) -> Price:
    """The model's rates: the override's, then genai-prices' (rates it lacks), else unknown."""
    listed = _listed(model, provider)
    base = listed or Price(model, provider, **CONSERVATIVE, source=UNKNOWN)
    if override:
        return replace(base, **override, source=OVERRIDE)
    return base


def _listed(model: str, provider: str) -> Price | None:
    try:
        nothing = PricedUsage(input_tokens=0, output_tokens=0)
        found = calc_price(nothing, model, provider_id=provider)
    except LookupError:
        return None
    prices = found.model_price
    rates = {
        "input": prices.input_mtok,
        "output": prices.output_mtok,
        "cache_write": prices.cache_write_mtok,
        "cache_write_1h": prices.cache_write_1h_mtok or prices.cache_write_mtok,
        "cache_read": prices.cache_read_mtok,
    }
    return Price(model, provider, **{k: _base(v) for k, v in rates.items()})


def _base(value: Any) -> float:
    """A flat rate, or the base of tiered rates (exact costs come from genai-prices itself)."""
    if value is None:
        return 0.0
    return float(value if isinstance(value, Decimal) else value.base)


def _field(usage: Any, name: str) -> Any:
    return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)


def _tokens(usage: Any) -> dict[str, int]:
    """The billed token kinds of an API usage (an SDK Usage or a dict of the same fields)."""
    split = _field(usage, "cache_creation")
    one_hour = int(_field(split, "ephemeral_1h_input_tokens") or 0) if split is not None else 0
    written = int(_field(usage, "cache_creation_input_tokens") or 0)
    return {
        "input": int(_field(usage, "input_tokens") or 0),
        "output": int(_field(usage, "output_tokens") or 0),
        "cache_write": max(written - one_hour, 0),
        "cache_write_1h": one_hour,
        "cache_read": int(_field(usage, "cache_read_input_tokens") or 0),
    }


def cost(usage: Any, price: Price) -> float:
    """USD of one response's usage: genai-prices' own calculation for a listed price (tiers
    included), the override's or the conservative rates otherwise."""
    tokens = _tokens(usage)
    if price.source == GENAI_PRICES:
        raw = (
            usage
            if isinstance(usage, dict)
            else usage.to_dict(mode="json", exclude_none=True, warnings=False)
        )
        extracted = extract_usage({"model": price.model, "usage": raw}, provider_id="anthropic")
        found = calc_price(extracted.usage, price.model, provider_id=price.provider)
        return round(float(found.total_price), 6)
    return round(sum(tokens[k] * getattr(price, k) for k in RATES) / 1_000_000, 6)


def usage_of(usage: Any, price: Price) -> Usage:
    """A records.Usage from one response's usage, priced."""
    tokens = _tokens(usage)
    return Usage(
        input_tokens=tokens["input"],
        output_tokens=tokens["output"],
        cache_creation_input_tokens=tokens["cache_write"] + tokens["cache_write_1h"],
        cache_read_input_tokens=tokens["cache_read"],
        usd=cost(usage, price),
    )
