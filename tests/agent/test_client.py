"""Client construction: first-party API or Bedrock (construction only, no network)."""

from __future__ import annotations

import anthropic
import pytest

from codybatch.agent.client import MAX_RETRIES, bedrock_model_id, make_client, request_model
from codybatch.settings import Settings


def test_anthropic_client_uses_settings() -> None:
    settings = Settings(anthropic_api_key="sk-ant-xyz", anthropic_base_url="http://127.0.0.1:9/")
    client = make_client(settings)
    assert isinstance(client, anthropic.Anthropic)
    assert client.api_key == "sk-ant-xyz"
    assert str(client.base_url) == "http://127.0.0.1:9/"
    assert client.max_retries == MAX_RETRIES >= 8
    assert make_client(settings, max_retries=3, timeout=5).max_retries == 3


def test_missing_key_or_unknown_provider_is_explained() -> None:
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        make_client(Settings())
    with pytest.raises(ValueError, match="anthropic' or 'bedrock"):
        make_client(Settings(claude_provider="openai", anthropic_api_key="k"))


def test_bedrock_client_uses_the_environment_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.delenv("ANTHROPIC_BEDROCK_BASE_URL", raising=False)
    settings = Settings(claude_provider="bedrock", aws_region="eu-west-1")
    client = make_client(settings)
    assert isinstance(client, anthropic.AnthropicBedrock)
    assert client.aws_region == "eu-west-1"
    assert str(client.base_url).rstrip("/") == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert client.max_retries == MAX_RETRIES
    # No keys of ours: boto3's default chain (env, profile, task role) signs requests.
    assert client.aws_access_key is None and client.aws_secret_key is None
    assert client.api_key is None


@pytest.mark.parametrize(
    ("model", "region", "expected"),
    [
        ("claude-sonnet-5-5", "us-east-1", "us.anthropic.claude-sonnet-5-5"),
        ("claude-haiku-5-5", "eu-central-1", "eu.anthropic.claude-haiku-5-5"),
        ("claude-opus-5-5", "ap-northeast-1", "apac.anthropic.claude-opus-5-5"),
        ("claude-sonnet-5-5", "sa-east-1", "global.anthropic.claude-sonnet-5-5"),
        ("eu.anthropic.claude-sonnet-5-5", "us-east-1", "eu.anthropic.claude-sonnet-5-5"),
        (
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "us-east-1",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
            "us-east-1",
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
        ),
    ],
)
def test_bedrock_model_ids(model: str, region: str, expected: str) -> None:
    assert bedrock_model_id(model, region) == expected


def test_request_model_depends_on_the_provider() -> None:
    assert request_model(Settings(), "claude-sonnet-5-5") == "claude-sonnet-5-5"
    bedrock = Settings(claude_provider="bedrock", aws_region="us-west-2")
    assert request_model(bedrock, "claude-sonnet-5-5").startswith("us.anthropic.")
