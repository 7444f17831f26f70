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
    return json.loads(redact_text(json.dumps(value), secrets))
