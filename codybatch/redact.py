"""Remove secrets from anything before it is stored or logged."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value with every secret replaced by a mask."""
    secrets = [s for s in secrets if s and len(s) >= 4]
    if not secrets:
        return value
    # Walk the value rather than its JSON text: there a secret holding '"', '\\' or
    # non-ASCII characters is escaped and would slip through.
    return _walk(json.loads(json.dumps(value)), secrets)


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {redact_text(k, secrets): _walk(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, secrets) for v in value]
    return value


def contains_secret(data: bytes, secrets: Iterable[str]) -> str | None:
    """Which secret `data` carries (as is, or base64-encoded), or None."""
    import base64

    for name, secret in enumerate(s for s in secrets if s and len(s) >= 8):
        raw = secret.encode()
        forms = [raw, base64.b64encode(raw), base64.b64encode(b"x-access-token:" + raw)]
        if any(form in data for form in forms):
            return f"secret #{name + 1} of the worker's configuration"
    return None
