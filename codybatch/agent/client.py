"""The Anthropic SDK client: first-party API or Amazon Bedrock, with generous retries."""

from __future__ import annotations

import re

import anthropic

from codybatch.settings import Settings

# The SDK retries 408/409/429/5xx (529 included) and connection errors, waiting what
# retry-after(-ms) asks or backing off exponentially (0.5 s doubling to 8 s); its
# default of 2 retries gives up within seconds of an overload.
MAX_RETRIES = 8
TIMEOUT_SECONDS = 600.0

# Bedrock needs its own model ids; the first-party aliases map onto them.
BEDROCK_MODELS = {
    "claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-sonnet-4-5-20250929": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "claude-haiku-4-5": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-haiku-4-5-20251001": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "claude-opus-4-5": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-5-20251101": "anthropic.claude-opus-4-5-20251101-v1:0",
    "claude-opus-4-1": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-1-20250805": "anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-sonnet-4-0": "anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-sonnet-4-20250514": "anthropic.claude-sonnet-4-20250514-v1:0",
}
_GEO = (("us-gov-", "us-gov"), ("us-", "us"), ("eu-", "eu"), ("ap-", "apac"), ("ca-", "us"))


def bedrock_model_id(model: str, region: str) -> str:
    """The Bedrock inference-profile id for a first-party model name; Bedrock ids pass through."""
    if model.startswith("arn:") or re.match(r"^([a-z-]+\.)?anthropic\.", model):
        return model
    base = BEDROCK_MODELS.get(model)
    if base is None:
        return model
    # Current Claude models are served on demand only through cross-region profiles.
    geo = next((g for prefix, g in _GEO if region.startswith(prefix)), "global")
    return f"{geo}.{base}"


def request_model(settings: Settings, model: str) -> str:
    """The model name to send with the chosen provider."""
    if settings.claude_provider == "bedrock":
        return bedrock_model_id(model, settings.aws_region)
    return model


def make_client(
    settings: Settings,
    *,
    max_retries: int = MAX_RETRIES,
    timeout: float = TIMEOUT_SECONDS,
) -> anthropic.Anthropic | anthropic.AnthropicBedrock:
    """A client for settings.claude_provider ("anthropic" or "bedrock")."""
    if settings.claude_provider == "bedrock":
        # No keys passed: the SDK signs with boto3's default chain (env, profile, task role).
        return anthropic.AnthropicBedrock(
            aws_region=settings.aws_region,
            max_retries=max_retries,
            timeout=anthropic.Timeout(timeout, connect=10.0),
        )
    if settings.claude_provider != "anthropic":
        raise ValueError(
            f"CODYBATCH_CLAUDE_PROVIDER={settings.claude_provider!r}: use 'anthropic' or 'bedrock'"
        )
    if not settings.anthropic_api_key:
        raise ValueError(
            "no Anthropic API key: set ANTHROPIC_API_KEY (or CLAUDE_API_KEY), "
            "or CODYBATCH_CLAUDE_PROVIDER=bedrock to use Amazon Bedrock"
        )
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url or None,
        max_retries=max_retries,
        timeout=anthropic.Timeout(timeout, connect=10.0),
    )
