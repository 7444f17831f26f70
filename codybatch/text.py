"""Strict text: what a job's names, branches and prompts may contain, and safe echoes of input."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

# Characters that reorder text as displayed (Trojan Source): never in commands or prompts.
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The same rules as a JSON-schema pattern (Python re and JavaScript alike), for the trigger
# form: C0/C1 controls, soft hyphen, bidi and zero-width characters, line and paragraph
# separators, BOM and lone surrogates.
ONE_LINE_PATTERN = (
    r"^[^\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]*$"
)
MULTI_LINE_PATTERN = (
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u061c\u200e\u200f\u202a-\u202e"
    r"\u2066-\u2069\ud800-\udfff]*$"
)
_SCHEME = re.compile(r"^(?:https?://)?", re.IGNORECASE)
# https://user:pass@host, https://token@host, user:pass@host (not ssh's git@host:owner/name).
_CREDENTIALS = re.compile(r"^https?://[^/@]+@|^[^/@:]+:[^/@]*@", re.IGNORECASE)


_CONTROL_NAMES = {
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\t": "TAB",
    "\x00": "NUL",
    "\x85": "NEXT LINE",
}


def describe(char: str) -> str:
    """U+202E (RIGHT-TO-LEFT OVERRIDE): how an error names a character."""
    name = unicodedata.name(char, "")
    if not name and unicodedata.category(char) == "Cc":
        name = _CONTROL_NAMES.get(char, "CONTROL")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def surrogate_problem(text: str) -> str | None:
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            return (
                f"contains {describe(char)}, half of a UTF-16 pair and not a character: "
                "send valid UTF-8 text"
            )
    return None


def one_line_problem(text: str) -> str | None:
    """Why text is not one line of visible characters (names, models, branches), or None."""
    problem = surrogate_problem(text)
    if problem:
        return problem
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn"):
            return f"contains {describe(char)}, a control or invisible character: remove it"
    return None


def multi_line_problem(text: str) -> str | None:
    """Why text is not plain text (prompts, commands may hold newlines and tabs), or None."""
    problem = surrogate_problem(text)
    if problem:
        return problem
    for char in text:
        if char in BIDI or (unicodedata.category(char) == "Cc" and char not in "\t\n\r"):
            return f"contains {describe(char)}, a control or text-direction character: remove it"
    return None


def has_credentials(text: str) -> bool:
    """True for URLs that carry a user name or password (user:pass@host, https://token@...)."""
    return bool(_CREDENTIALS.match(text.strip()))


def mask_credentials(text: str) -> str:
    """The text with the user and password of each line's URL masked (https://***@host)."""
    return "\n".join(
        _CREDENTIALS.sub(lambda m: _SCHEME.match(m[0])[0] + "***@", line)
        for line in text.split("\n")
    )


def readable(value: Any, limit: int = 2_000) -> Any:
    """A JSON-safe copy of any input, for the record of a refused job: lone surrogates become
    U+FFFD, credentials in URLs are masked, long text is cut, non-finite numbers become text."""
    if isinstance(value, str):
        text = scrub(value)
        text = mask_credentials(text)
        return text if len(text) <= limit else text[:limit] + "…"
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(readable(k, 200)): readable(v, limit) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        return [readable(v, limit) for v in list(value)[:100]]
    return readable(repr(value), limit)


def scrub(value: Any) -> Any:
    """Any JSON-like value with lone surrogates replaced (U+FFFD), so it can be encoded."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value
