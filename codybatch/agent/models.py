"""Facts about a Claude model from the Models API, and the checks a prompt job passes first."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anthropic

from codybatch.agent.client import credentials_problem, make_client, request_model
from codybatch.agent.pricing import Price, parse_overrides, price_for
from codybatch.settings import Settings
from codybatch.spec import EFFORTS, FieldError, JobSpec

# The SDK refuses a non-streaming call it expects to outlast 10 minutes (128,000 output
# tokens an hour): above this, max_tokens needs streaming.
NON_STREAMING_MAX_TOKENS = 128_000 * 10 // 60
# When the catalogue cannot be read: an output size every Claude model accepts.
CONSERVATIVE_MAX_TOKENS = 8_192
FOUND, MISSING, UNREACHABLE = "found", "missing", "unreachable"
LOOKUP_RETRIES = 2  # a catalogue that does not answer soon is not worth holding a job for
LOOKUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ModelFacts:
    """What the Models API says about one model (status: found, missing or unreachable)."""

    id: str
    status: str
    lifecycle: str = ""  # active | deprecated | retired
    line: str | None = None
    display_name: str = ""
    retires_at: datetime | None = None
    max_tokens: int | None = None
    max_input_tokens: int | None = None
    efforts: tuple[str, ...] | None = None  # effort levels it accepts; None: not known
    replacement: str | None = None  # the newest active model of the same line
    active: tuple[str, ...] = ()  # active model ids, for an unknown id's error
    reason: str = ""  # why the catalogue could not be read

    @property
    def output_tokens(self) -> int:
        """Output tokens one call may ask for: the model's own cap, within the SDK's."""
        return min(self.max_tokens or CONSERVATIVE_MAX_TOKENS, NON_STREAMING_MAX_TOKENS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "lifecycle": self.lifecycle,
            "line": self.line,
            "retires_at": self.retires_at.date().isoformat() if self.retires_at else None,
            "max_tokens": self.max_tokens,
            "max_input_tokens": self.max_input_tokens,
            "efforts": list(self.efforts) if self.efforts is not None else None,
        }


_cache: dict[tuple[str, str, str], ModelFacts] = {}
_cache_lock = threading.Lock()


def model_facts(settings: Settings, model: str, client: Any = None) -> ModelFacts:
    """The model's facts, looked up once per process (provider, endpoint and model)."""
    key = (settings.claude_provider, settings.anthropic_base_url, model)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    facts = _look_up(settings, model, client)
    with _cache_lock:
        _cache[key] = facts
    return facts


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _look_up(settings: Settings, model: str, client: Any) -> ModelFacts:
    if settings.claude_provider == "bedrock":
        return ModelFacts(model, UNREACHABLE, reason="Amazon Bedrock has no Models API")
    try:
        client = (client or make_client(settings)).with_options(
            max_retries=LOOKUP_RETRIES, timeout=LOOKUP_TIMEOUT
        )
        info = client.models.retrieve(model)
    except anthropic.NotFoundError:
        return ModelFacts(model, MISSING, active=_active_ids(client))
    except (anthropic.AnthropicError, ValueError) as exc:
        return ModelFacts(model, UNREACHABLE, reason=_reason(exc))
    caps = info.capabilities
    efforts: tuple[str, ...] | None = None
    if caps is not None:
        effort = caps.effort
        efforts = tuple(
            level
            for level in EFFORTS
            if effort.supported and getattr(getattr(effort, level, None), "supported", False)
        )
    replacement = None
    if info.lifecycle != "active" and info.line:
        replacement = next(
            (m.id for m in _active(client) if m.line == info.line and m.id != info.id), None
        )
    return ModelFacts(
        id=info.id,
        status=FOUND,
        lifecycle=info.lifecycle,
        line=info.line,
        display_name=info.display_name,
        retires_at=info.retires_at,
        max_tokens=info.max_tokens,
        max_input_tokens=info.max_input_tokens,
        efforts=efforts,
        replacement=replacement,
    )


def _active(client: Any) -> list[Any]:
    """Active models, newest first (the API lists them so)."""
    try:
        return list(client.models.list(lifecycle=["active"], limit=100))
    except anthropic.AnthropicError:
        return []


def _active_ids(client: Any) -> tuple[str, ...]:
    return tuple(m.id for m in _active(client))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        return f"the Models API answered {exc.status_code}: {exc.message}"
    if isinstance(exc, anthropic.APIConnectionError):
        return "the Models API could not be reached"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class ModelCheck:
    """The outcome of checking a prompt job's model, effort, prices and credentials."""

    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: ModelFacts | None = None


def check_model(spec: JobSpec, settings: Settings, client: Any = None) -> ModelCheck:
    """Refuse what would fail in every repository; warn about what runs but needs attention."""
    check = ModelCheck()
    if not spec.task.strip():
        return check  # shell steps only: Claude is not called
    model_field = "model" if spec.model else "CODYBATCH_MODEL"
    model = spec.model or settings.model
    effort_field = "effort" if spec.effort else "CODYBATCH_EFFORT"
    effort = spec.effort or settings.effort
    if effort not in EFFORTS:
        check.errors.append(
            FieldError(effort_field, f"{effort!r} is not an effort level: use {', '.join(EFFORTS)}")
        )
    try:
        parse_overrides(settings.prices)
    except ValueError as exc:
        check.errors.append(FieldError("CODYBATCH_PRICES", str(exc)))
    problem = credentials_problem(settings)
    if problem is not None and settings.runner == "batch" and problem[0] == "ANTHROPIC_API_KEY":
        # The key reaches only the Batch containers (from Secrets Manager): each worker runs
        # this same check before its first call.
        check.warnings.append(
            f"model {model!r} was not checked here: the Anthropic key is given to the Batch "
            "workers only, and each checks the model before calling it"
        )
        return check
    if problem is not None:
        check.errors.append(FieldError(*problem))
        return check
    facts = check.facts = model_facts(settings, model, client)
    retires = facts.retires_at.date().isoformat() if facts.retires_at else "an unannounced date"
    instead = f"use {facts.replacement!r}" if facts.replacement else "choose an active model"
    if facts.status == MISSING:
        known = ", ".join(facts.active) or "an active model id"
        check.errors.append(
            FieldError(model_field, f"{model!r} is not a model the API knows: use one of {known}")
        )
    elif facts.lifecycle == "retired":
        check.errors.append(
            FieldError(
                model_field,
                f"{model!r} ({facts.display_name}) was retired on {retires} and requests naming "
                f"it fail: {instead} (the active {facts.line or 'replacement'} model)",
            )
        )
    elif facts.lifecycle == "deprecated":
        check.warnings.append(
            f"model {model!r} is deprecated and retires on {retires}: {instead} before then"
        )
    elif facts.status == UNREACHABLE:
        check.warnings.append(
            f"model {model!r} was not checked ({facts.reason}): the job goes on with "
            f"conservative defaults ({CONSERVATIVE_MAX_TOKENS:,} output tokens a call, "
            "no effort setting)"
        )
    if facts.efforts is not None and effort in EFFORTS and effort not in facts.efforts:
        if not facts.efforts:
            if spec.effort:
                check.errors.append(
                    FieldError("effort", f"model {model!r} has no effort setting: remove it")
                )
        else:
            check.errors.append(
                FieldError(
                    effort_field,
                    f"{effort!r} is not an effort level model {model!r} supports: use "
                    f"{', '.join(facts.efforts)}",
                )
            )
    price = model_price(settings, model)
    if not price.known:
        check.warnings.append(
            f"no price known for model {model!r}: costs and max_usd use the conservative rate "
            f"(${price.input:g} input, ${price.output:g} output per million tokens); set "
            "CODYBATCH_PRICES to give its rates"
        )
    return check


def model_price(settings: Settings, model: str) -> Price:
    """The rates of model as requested from the configured provider (Bedrock's differ)."""
    try:
        overrides = parse_overrides(settings.prices)
    except ValueError:
        overrides = {}  # refused at validate; a worker never gets here with it
    requested = request_model(settings, model)
    provider = "aws" if settings.claude_provider == "bedrock" else "anthropic"
    return price_for(requested, provider, overrides.get(model) or overrides.get(requested))


def sent_effort(facts: ModelFacts, effort: str) -> str | None:
    """The effort to send as output_config, only to a model that says it accepts it."""
    return effort if facts.efforts and effort in facts.efforts else None
