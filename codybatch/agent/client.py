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

_GEO = (("us-gov-", "us-gov"), ("us-", "us"), ("eu-", "eu"), ("ap-", "apac"), ("ca-", "us"))


def bedrock_model_id(model: str, region: str) -> str:
    """The Bedrock inference-profile id of a first-party model id; Bedrock ids pass through.

    Current Claude models carry their first-party id on Bedrock (anthropic.claude-sonnet-5-5)
    and are served on demand through a cross-region profile (us., eu., apac. or global.).
    """
    if model.startswith("arn:") or re.match(r"^([a-z-]+\.)?anthropic\.", model):
        return model
    geo = next((g for prefix, g in _GEO if region.startswith(prefix)), "global")
    return f"{geo}.anthropic.{model}"


def request_model(settings: Settings, model: str) -> str:
    """The model name to send with the chosen provider."""
    if settings.claude_provider == "bedrock":
        return bedrock_model_id(model, settings.aws_region)
    return model


def credentials_problem(settings: Settings) -> tuple[str, str] | None:
    """(setting, what to fix) when no client can be made with these settings, else None."""
    if settings.claude_provider not in ("anthropic", "bedrock"):
        return (
            "CODYBATCH_CLAUDE_PROVIDER",
            f"{settings.claude_provider!r} is not a provider: use 'anthropic' or 'bedrock'",
        )
    if settings.claude_provider == "anthropic" and not settings.anthropic_api_key:
        return (
            "ANTHROPIC_API_KEY",
            "is not set: a job with a prompt needs an Anthropic API key (ANTHROPIC_API_KEY or "
            "CLAUDE_API_KEY), or CODYBATCH_CLAUDE_PROVIDER=bedrock to use Amazon Bedrock",
        )
    return None


def make_client(
    settings: Settings,
    *,
    max_retries: int = MAX_RETRIES,
    timeout: float = TIMEOUT_SECONDS,
) -> anthropic.Anthropic | anthropic.AnthropicBedrock:
    """A client for settings.claude_provider ("anthropic" or "bedrock")."""
    problem = credentials_problem(settings)
    if problem is not None:
        raise ValueError(f"{problem[0]} {problem[1]}")
    if settings.claude_provider == "bedrock":
        # No keys passed: the SDK signs with boto3's default chain (env, profile, task role).
        return anthropic.AnthropicBedrock(
            aws_region=settings.aws_region,
            max_retries=max_retries,
            timeout=anthropic.Timeout(timeout, connect=10.0),
        )
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url or None,
        max_retries=max_retries,
        timeout=anthropic.Timeout(timeout, connect=10.0),
    )
