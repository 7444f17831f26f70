"""Per-model prices (USD per million tokens) and the cost of a response's usage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from codybatch.records import Usage

CACHE_WRITE_5M = 1.25  # x the input price
CACHE_WRITE_1H = 2.0
CACHE_READ = 0.1


@dataclass(frozen=True)
class Price:
    """List prices of one model, USD per million tokens."""

    model: str
    input: float
    output: float
    known: bool = True

    @property
    def cache_write(self) -> float:
        return self.input * CACHE_WRITE_5M

    @property
    def cache_write_1h(self) -> float:
        return self.input * CACHE_WRITE_1H

    @property
    def cache_read(self) -> float:
        return self.input * CACHE_READ

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input,
            "output": self.output,
            "cache_write": round(self.cache_write, 6),
            "cache_read": round(self.cache_read, 6),
            "known": self.known,
        }


# Anthropic list prices for the first-party API (Bedrock on-demand prices match them).
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-0": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4-0": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}
_MOST_EXPENSIVE = max(PRICES.values(), key=lambda p: (p[1], p[0]))

_PREFIX = re.compile(r"^(?:(?:us|eu|apac|global|jp|au|ca|us-gov)\.)?(?:anthropic\.)?")
_SUFFIX = re.compile(r"(?:-v\d+(?::\d+)?|@\d{8}|-\d{8}|-latest)+$")


def normalise_model(model: str) -> str:
    """claude-sonnet-4-5 for claude-sonnet-4-5-20250929, us.anthropic.…-v1:0, …@20250929."""
    name = _PREFIX.sub("", model.strip().lower())
    previous = None
    while previous != name:
        previous, name = name, _SUFFIX.sub("", name)
    return name


def price_for(model: str) -> Price:
    """The model's price; an unknown model is priced as the most expensive known one."""
    known = PRICES.get(normalise_model(model))
    if known:
        return Price(model, *known)
    return Price(model, *_MOST_EXPENSIVE, known=False)


def cost(usage: Any, price: Price) -> float:
    """USD of one response's usage (an SDK Usage object or a dict with the same fields)."""

    def get(name: str) -> Any:
        return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)

    write_total = int(get("cache_creation_input_tokens") or 0)
    split = get("cache_creation")
    one_hour = 0
    if split is not None:
        one_hour = int(
            (split.get("ephemeral_1h_input_tokens") if isinstance(split, dict) else None)
            or getattr(split, "ephemeral_1h_input_tokens", 0)
            or 0
        )
    five_min = max(write_total - one_hour, 0)
    usd = (
        int(get("input_tokens") or 0) * price.input
        + int(get("output_tokens") or 0) * price.output
        + five_min * price.cache_write
        + one_hour * price.cache_write_1h
        + int(get("cache_read_input_tokens") or 0) * price.cache_read
    ) / 1_000_000
    return round(usd, 6)


def usage_of(usage: Any, price: Price) -> Usage:
    """A records.Usage from one response's usage, priced."""

    def get(name: str) -> int:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(value or 0)

    return Usage(
        input_tokens=get("input_tokens"),
        output_tokens=get("output_tokens"),
        cache_creation_input_tokens=get("cache_creation_input_tokens"),
        cache_read_input_tokens=get("cache_read_input_tokens"),
        usd=cost(usage, price),
    )
