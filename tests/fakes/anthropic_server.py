"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 for the real SDK.

Each test scripts the replies, one step per POST /v1/messages: a reply dict (see
`reply`), an `ApiError` (sent with Anthropic's error body and headers), a `Delay`, or a
callable that receives the recorded request and returns one of those. Every request
is recorded (headers and parsed body). Usage is computed from the request the way the
API bills it: tokens before a previously cached breakpoint are cache reads, tokens up
to the last breakpoint cache writes, the rest plain input (about 4 bytes a token).
Requests the real API would reject (tool_use without tool_result, more than four
cache_control blocks, empty text blocks, a wrong key) get the real API's 400/401.

It plays the current model generation by its docs: GET /v1/models and /v1/models/{id}
serve a catalogue with lifecycles (`MODELS`); a request naming a retired or unknown model
gets 404; the 5.x models refuse thinking budgets, `thinking: disabled`, temperature/top_p/
top_k, assistant prefill and forced tool choice (400), and an effort or max_tokens the
model does not accept. Those models think: every reply starts with a signed thinking
block (unless the step brings its own), and a request that sends one back modified, under
another model, or drops it from its assistant message gets 400.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from codybatch.agent.models import clear_cache
from tests.fakes.serving import start_server, stop_server

FAKE_API_KEY = "sk-ant-api03-FAKE-test-key-never-leaks-0123456789"
EDITOR = "str_replace_based_edit_tool"
MAX_BREAKPOINTS = 4


@dataclass
class Recorded:
    """One HTTP request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    at: float = field(default_factory=time.monotonic)
    status: int = 0


@dataclass
class ApiError:
    """A scripted error response in Anthropic's shape."""

    status: int
    type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delay:
    """Wait before answering with `then` (to make the client time out)."""

    seconds: float
    then: Any


Step = dict | ApiError | Delay | Callable[[Recorded], Any]


# -- the model catalogue (GET /v1/models), newest first ---------------------------------

CURRENT = ("claude-fable-5-2", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")
DEPRECATED = "claude-haiku-4-5"
RETIRED = "claude-sonnet-4-5"
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")


def _support(value: bool) -> dict[str, bool]:
    return {"supported": value}


def model_entry(
    id: str,
    display_name: str,
    line: str,
    created_at: str,
    *,
    lifecycle: str = "active",
    deprecated_at: str | None = None,
    retires_at: str | None = None,
    max_tokens: int = 128_000,
    max_input_tokens: int = 1_000_000,
    efforts: tuple[str, ...] = EFFORT_LEVELS,
    current: bool = True,
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A catalogue entry in the Models API's shape (plus the fake's own `_rules`)."""
    return {
        "type": "model",
        "id": id,
        "display_name": display_name,
        "created_at": created_at,
        "lifecycle": lifecycle,
        "deprecated_at": deprecated_at,
        "retires_at": retires_at,
        "line": line,
        "max_tokens": max_tokens,
        "max_input_tokens": max_input_tokens,
        "capabilities": {
            "batch": _support(True),
            "citations": _support(True),
            "code_execution": _support(True),
            "context_management": {"supported": True},
            "effort": {
                "supported": bool(efforts),
                **{level: _support(level in efforts) for level in EFFORT_LEVELS},
            },
            "image_input": _support(True),
            "pdf_input": _support(True),
            "server_tools": {
                "supported": True,
                "code_execution": _support(True),
                "web_search": _support(True),
            },
            "structured_outputs": _support(True),
            "thinking": {
                "supported": True,
                "types": {
                    "adaptive": _support(True),
                    "between_tools": _support(current),
                    "disabled": _support(not current),
                    "enabled": _support(not current),
                },
            },
        },
        "_rules": {"current": current, "aliases": aliases},
    }


def default_models() -> list[dict[str, Any]]:
    return [
        model_entry("claude-fable-5-2", "Claude Fable 5.2", "fable", "2026-11-10T00:00:00Z"),
        model_entry("claude-opus-5-5", "Claude Opus 5.5", "opus", "2026-10-20T00:00:00Z"),
        model_entry("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", "2026-09-28T00:00:00Z"),
        model_entry(
            "claude-haiku-5-5",
            "Claude Haiku 5.5",
            "haiku",
            "2026-09-28T00:00:00Z",
            max_tokens=64_000,
            efforts=("low", "medium", "high"),
        ),
        model_entry(
            "claude-haiku-4-5-20251001",
            "Claude Haiku 4.5",
            "haiku",
            "2025-10-01T00:00:00Z",
            lifecycle="deprecated",
            deprecated_at="2026-10-01T00:00:00Z",
            retires_at="2027-04-01T00:00:00Z",
            max_tokens=64_000,
            max_input_tokens=200_000,
            efforts=(),
            current=False,
            aliases=(DEPRECATED,),
        ),
        model_entry(
            "claude-sonnet-4-5-20250929",
            "Claude Sonnet 4.5",
            "sonnet",
            "2025-09-29T00:00:00Z",
            lifecycle="retired",
            deprecated_at="2026-08-30T00:00:00Z",
            retires_at="2026-11-30T00:00:00Z",
            max_tokens=64_000,
            max_input_tokens=200_000,
            efforts=(),
            current=False,
            aliases=(RETIRED,),
        ),
        model_entry(
            "claude-opus-4-20250514",
            "Claude Opus 4",
            "opus",
            "2025-05-14T00:00:00Z",
            lifecycle="retired",
            deprecated_at="2026-03-15T00:00:00Z",
            retires_at="2026-06-15T00:00:00Z",
            max_tokens=32_000,
            max_input_tokens=200_000,
            efforts=(),
            current=False,
            aliases=("claude-opus-4-0",),
        ),
    ]


# -- building scripted replies ---------------------------------------------------------

_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: Any, id: str | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake_{next(_ids):05d}",
        "name": name,
        "input": tool_input,
    }


def view(path: str, view_range: list[int] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"command": "view", "path": path}
    if view_range:
        args["view_range"] = view_range
    return tool_use(EDITOR, args)


def create(path: str, file_text: str) -> dict[str, Any]:
    return tool_use(EDITOR, {"command": "create", "path": path, "file_text": file_text})


def str_replace(path: str, old: str, new: str) -> dict[str, Any]:
    return tool_use(
        EDITOR, {"command": "str_replace", "path": path, "old_str": old, "new_str": new}
    )


def insert(path: str, line: int, value: str) -> dict[str, Any]:
    return tool_use(
        EDITOR, {"command": "insert", "path": path, "insert_line": line, "insert_text": value}
    )


def thinking(value: str) -> dict[str, Any]:
    """A thinking block; the fake signs it when it sends it."""
    return {"type": "thinking", "thinking": value}


def redacted_thinking() -> dict[str, Any]:
    """A redacted thinking block; the fake fills in its opaque data."""
    return {"type": "redacted_thinking"}


def search(pattern: str, **kwargs: Any) -> dict[str, Any]:
    return tool_use("search", {"pattern": pattern, **kwargs})


def finish(
    changes_necessary: bool, summary: str = "Done.", pr_title: str | None = None
) -> dict[str, Any]:
    args: dict[str, Any] = {"changes_necessary": changes_necessary, "summary": summary}
    if pr_title is not None:
        args["pr_title"] = pr_title
    return tool_use("finish", args)


def reply(
    *blocks: dict[str, Any] | str,
    stop_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A scripted assistant message; stop_reason defaults to tool_use/end_turn."""
    content = [text(b) if isinstance(b, str) else b for b in blocks]
    if stop_reason is None:
        uses = any(b["type"] == "tool_use" for b in content)
        stop_reason = "tool_use" if uses else "end_turn"
    step: dict[str, Any] = {"content": content, "stop_reason": stop_reason}
    if usage is not None:
        step["usage"] = usage
    return step


def error(
    status: int,
    type: str,
    message: str,
    *,
    retry_after: str | None = None,
    retry_after_ms: str | None = "5",
    headers: dict[str, str] | None = None,
) -> ApiError:
    """An error reply; retries wait retry_after_ms (5 ms) unless told otherwise."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["retry-after"] = retry_after
    if retry_after_ms is not None:
        extra["retry-after-ms"] = retry_after_ms
    return ApiError(status, type, message, extra)


def overloaded() -> ApiError:
    return error(529, "overloaded_error", "Overloaded")


def rate_limited(retry_after: str = "0.2") -> ApiError:
    """A 429 that asks, in seconds, for a pause (no retry-after-ms)."""
    return error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        retry_after=retry_after,
        retry_after_ms=None,
    )


def bad_request(message: str) -> ApiError:
    return error(400, "invalid_request_error", message, retry_after_ms=None)


# Variables that would change which credentials or endpoint the SDK uses.
_SDK_ENV = (
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_API_KEY",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "AWS_BEARER_TOKEN_BEDROCK",
    "CODYBATCH_MODEL",
    "CODYBATCH_CLAUDE_PROVIDER",
)


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """A running fake with ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY pointing at it.

    Use it from any test folder: `from tests.fakes.anthropic_server import fake_anthropic`.
    """
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    with FakeAnthropic() as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", fake.api_key)
        yield fake


# -- the server ------------------------------------------------------------------------


class FakeAnthropic:
    """The fake API. `with FakeAnthropic() as api:` or start()/stop()."""

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        api_key: str = FAKE_API_KEY,
        bytes_per_token: int = 4,
        min_cache_tokens: int = 0,
        models: Iterable[dict[str, Any]] | None = None,
        think: bool = True,
    ):
        self.api_key = api_key
        self.models = list(default_models() if models is None else models)
        self.think = think  # current models start each reply with a signed thinking block
        self.models_down = False  # the Models API answers 503 (the Messages API still works)
        self._secret = hashlib.sha256(f"{id(self)}{time.time()}".encode()).digest()
        self._redacted: set[str] = set()
        self._thinking_of: dict[str, list[dict[str, Any]]] = {}  # tool_use id -> blocks
        self.bytes_per_token = bytes_per_token
        self.min_cache_tokens = min_cache_tokens
        self.requests: list[Recorded] = []
        self.exhausted = False
        self._script: list[Step] = list(script)
        self._lock = threading.Lock()
        self._cache: set[str] = set()
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # scripting and inspection

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    @property
    def remaining(self) -> int:
        return len(self._script)

    @property
    def message_requests(self) -> list[Recorded]:
        """Every POST /v1/messages received, retries included."""
        return [r for r in self.requests if r.path.startswith("/v1/messages")]

    @property
    def model_lookups(self) -> list[Recorded]:
        """Every GET /v1/models(/{id}) received."""
        return [r for r in self.requests if r.path.startswith("/v1/models")]

    def model(self, name: str) -> dict[str, Any] | None:
        """The catalogue entry of a model id or alias."""
        return next(
            (m for m in self.models if name == m["id"] or name in m["_rules"]["aliases"]), None
        )

    @property
    def answered(self) -> list[Recorded]:
        """The POST /v1/messages that got a 200."""
        return [r for r in self.message_requests if r.status == 200]

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = start_server(Handler, poll=0.02)
        clear_cache()  # model facts cached for an earlier fake on this port must not leak
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # handling

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        record = Recorded(
            handler.command,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
            raw,
            body,
        )
        with self._lock:
            self.requests.append(record)
            number = next(self._counter)
        request_id = f"req_fake_{number:05d}"
        status, payload, headers = self._respond(record, request_id)
        record.status = status
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            handler.send_header("request-id", request_id)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _respond(self, record: Recorded, request_id: str) -> tuple[int, Any, dict[str, str]]:
        path = record.path.split("?")[0]
        if record.method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return self._models(record, request_id)
        if record.method != "POST" or path != "/v1/messages":
            return _error_payload(
                ApiError(404, "not_found_error", f"{record.method} {record.path}: not found"),
                request_id,
            )
        problem = self._check(record)
        if problem is not None:
            return _error_payload(problem, request_id)
        with self._lock:
            if self._script:
                step: Any = self._script.pop(0)
            else:
                self.exhausted = True
                step = ApiError(
                    500,
                    "api_error",
                    "the fake model's script is exhausted",
                    {"x-should-retry": "false"},
                )
        while True:
            if isinstance(step, Delay):
                time.sleep(step.seconds)
                step = step.then
            elif callable(step):
                step = step(record)
            else:
                break
        if isinstance(step, ApiError):
            return _error_payload(step, request_id)
        return 200, self._message(record.body, step, request_id), {}

    def _authenticated(self, record: Recorded) -> ApiError | None:
        headers = record.headers
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if given != self.api_key:
            return ApiError(
                401, "authentication_error", "invalid x-api-key", {"x-should-retry": "false"}
            )
        return None

    def _models(self, record: Recorded, request_id: str) -> tuple[int, Any, dict[str, str]]:
        """GET /v1/models (active and deprecated unless ?lifecycle[]= asks) and /{id}."""
        problem = self._authenticated(record)
        if self.models_down:
            problem = error(503, "api_error", "the Models API is unavailable")
        if problem is not None:
            return _error_payload(problem, request_id)
        url = urlsplit(record.path)
        public = [{k: v for k, v in m.items() if k != "_rules"} for m in self.models]
        if url.path != "/v1/models":
            name = url.path.removeprefix("/v1/models/")
            found = self.model(name)
            if found is None:
                return _error_payload(
                    ApiError(404, "not_found_error", f"model: {name}"), request_id
                )
            return 200, {k: v for k, v in found.items() if k != "_rules"}, {}
        query = parse_qs(url.query)
        wanted = query.get("lifecycle[]") or query.get("lifecycle") or ["active", "deprecated"]
        listed = [m for m in public if m["lifecycle"] in wanted]
        after = (query.get("after_id") or [None])[0]
        if after is not None:
            ids = [m["id"] for m in listed]
            listed = listed[ids.index(after) + 1 :] if after in ids else []
        limit = int((query.get("limit") or ["20"])[0])
        page = listed[:limit]
        return (
            200,
            {
                "data": page,
                "has_more": len(listed) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            },
            {},
        )

    def _sign(self, model: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{model}\0{value}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _check_model(self, body: dict[str, Any]) -> ApiError | None:
        """What the model itself refuses: retired or unknown ids, and the 5.x rules."""
        entry = self.model(body["model"])
        if entry is None or entry["lifecycle"] == "retired":
            return ApiError(404, "not_found_error", f"model: {body['model']}")
        if body["max_tokens"] > entry["max_tokens"]:
            return bad_request(
                f"max_tokens: {body['max_tokens']} > {entry['max_tokens']}, which is the "
                f"maximum allowed number of output tokens for {entry['id']}"
            )
        caps = entry["capabilities"]
        effort = (body.get("output_config") or {}).get("effort")
        if effort is not None and not caps["effort"].get(effort, {}).get("supported"):
            return bad_request(f"output_config.effort: {effort!r} is not supported by this model")
        if not entry["_rules"]["current"]:
            return None
        thinking_config = body.get("thinking") or {}
        if thinking_config.get("type") == "enabled" or "budget_tokens" in thinking_config:
            return bad_request(
                "thinking.budget_tokens: manual thinking budgets are not supported on this "
                'model; use output_config={"effort": ...}'
            )
        if thinking_config.get("type") == "disabled":
            return bad_request(
                'thinking.type: "disabled" is not supported on this model; use '
                '"between_tools" for the lowest setting'
            )
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return bad_request(f"{name}: sampling parameters are not supported on this model")
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return bad_request("tool_choice: forced tool use is not supported on this model")
        if body["messages"][-1].get("role") == "assistant":
            return bad_request(
                "messages: assistant message prefill is not supported on this model; the "
                "last message must use the user role"
            )
        return self._check_thinking(body)

    def _check_thinking(self, body: dict[str, Any]) -> ApiError | None:
        """Thinking blocks must come back exactly as sent, under the model that wrote them."""
        for i, message in enumerate(body["messages"]):
            if message.get("role") != "assistant" or isinstance(message.get("content"), str):
                continue
            blocks = message.get("content") or []
            for j, block in enumerate(blocks):
                kind = block.get("type")
                if kind == "thinking" and not hmac.compare_digest(
                    str(block.get("signature", "")),
                    self._sign(body["model"], str(block.get("thinking", ""))),
                ):
                    return bad_request(
                        f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    )
                if kind == "redacted_thinking" and block.get("data") not in self._redacted:
                    return bad_request(
                        f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
                    )
            uses = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            sent = [b for b in blocks if b.get("type") in ("thinking", "redacted_thinking")]
            wanted = self._thinking_of.get(uses[0]) if uses else None
            if wanted is not None and [_clean(b) for b in sent] != wanted:
                return bad_request(
                    f"messages.{i}.content: thinking blocks in an assistant message with "
                    "tool use must be passed back unmodified and in order"
                )
        return None

    def _check(self, record: Recorded) -> ApiError | None:
        """What the real API would refuse."""
        headers = record.headers
        problem = self._authenticated(record)
        if problem is not None:
            return problem
        if "anthropic-version" not in headers:
            return bad_request("anthropic-version: header is required")
        body = record.body
        if not isinstance(body, dict):
            return bad_request("the request body is not valid JSON")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return bad_request(f"{name}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return bad_request("max_tokens: must be a positive integer")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return bad_request("messages: at least one message is required")
        if messages[0].get("role") != "user":
            return bad_request('messages: first message must use the "user" role')
        breakpoints = sum(1 for block in _blocks(body) if "cache_control" in block)
        if breakpoints > MAX_BREAKPOINTS:
            return bad_request(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {breakpoints}."
            )
        names = [tool.get("name") for tool in body.get("tools") or []]
        if len(names) != len(set(names)):
            return bad_request("tools: Tool names must be unique.")
        for i, message in enumerate(messages):
            content = message.get("content")
            blocks = [text(content)] if isinstance(content, str) else content or []
            if not blocks:
                return bad_request(f"messages.{i}: content must not be empty")
            for block in blocks:
                if block.get("type") == "text" and not block.get("text"):
                    return bad_request(f"messages.{i}: text content blocks must be non-empty")
            if message.get("role") != "assistant":
                continue
            wanted = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            if not wanted:
                continue
            following = messages[i + 1] if i + 1 < len(messages) else None
            answers = (
                []
                if following is None
                else [b for b in following.get("content") or [] if isinstance(b, dict)]
            )
            results = [b.get("tool_use_id") for b in answers if b.get("type") == "tool_result"]
            missing = [w for w in wanted if w not in results]
            if following is not None and missing:
                return bad_request(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block "
                    "must have a corresponding `tool_result` block in the next message."
                )
            extra = [r for r in results if r not in wanted]
            if extra:
                return bad_request(
                    f"messages.{i + 1}.content: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {extra[0]}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            kinds = [b.get("type") for b in answers]
            first_other = next((k for k, kind in enumerate(kinds) if kind != "tool_result"), None)
            if first_other is not None and "tool_result" in kinds[first_other:]:
                return bad_request(
                    f"messages.{i + 1}: tool_result blocks must come first in the content"
                )
        return self._check_model(body)

    def _message(
        self, body: dict[str, Any], step: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        content = copy.deepcopy(step.get("content", []))
        entry = self.model(body["model"]) or {}
        kinds = {b.get("type") for b in content}
        current = entry.get("_rules", {}).get("current")
        if self.think and current and not kinds & {"thinking", "redacted_thinking"}:
            content.insert(0, thinking("Working out the next step."))
        for block in content:
            if block.get("type") == "tool_use" and not block.get("id"):
                block["id"] = f"toolu_fake_{next(_ids):05d}"
            elif block.get("type") == "thinking":
                block["signature"] = self._sign(body["model"], block["thinking"])
            elif block.get("type") == "redacted_thinking":
                block["data"] = base64.b64encode(os.urandom(24)).decode()
                self._redacted.add(block["data"])
        signed = [_clean(b) for b in content if b["type"] in ("thinking", "redacted_thinking")]
        for block in content:
            if block.get("type") == "tool_use":
                self._thinking_of[block["id"]] = signed
        usage = self._usage(body)
        usage["output_tokens"] = max(1, len(json.dumps(content)) // self.bytes_per_token)
        usage.update(step.get("usage") or {})
        return {
            "id": f"msg_fake_{request_id.rsplit('_', 1)[-1]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": step.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """Input, cache write and cache read tokens, as the API would bill this request."""
        sizes, hashes, marks = [], [], []
        digest = hashlib.sha256()
        for index, block in enumerate(_blocks(body)):
            clean = {k: v for k, v in block.items() if k != "cache_control"}
            encoded = json.dumps(clean, sort_keys=True).encode()
            digest.update(encoded)
            sizes.append(len(encoded))
            hashes.append(digest.copy().hexdigest())
            if "cache_control" in block:
                marks.append(index)
        tokens = [max(1, s // self.bytes_per_token) for s in sizes]
        total = sum(tokens)
        last = marks[-1] if marks else -1
        with self._lock:
            # The API reads the longest cached prefix ending at or before a breakpoint.
            hit = max((i for i in range(last + 1) if hashes[i] in self._cache), default=-1)
            written = [m for m in marks if sum(tokens[: m + 1]) >= self.min_cache_tokens]
            self._cache.update(hashes[m] for m in written)
        read = sum(tokens[: hit + 1])
        write = sum(tokens[hit + 1 : last + 1]) if written else 0
        return {
            "input_tokens": total - read - write,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        }


def cached_prefix_bytes(body: dict[str, Any]) -> tuple[int, int]:
    """(bytes up to the last cache breakpoint, all bytes) of a request's tools/system/messages."""
    sizes, last = [], -1
    for index, block in enumerate(_blocks(body)):
        clean = {k: v for k, v in block.items() if k != "cache_control"}
        sizes.append(len(json.dumps(clean, sort_keys=True).encode()))
        if "cache_control" in block:
            last = index
    return sum(sizes[: last + 1]), sum(sizes)


def _clean(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request as the cache sees it: tools, then system, then message blocks."""
    out: list[dict[str, Any]] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str):
        out.append(text(system))
    elif system:
        out.extend(system)
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": message.get("role"), **text(content)})
        else:
            out.extend({"role": message.get("role"), **b} for b in content or [])
    return out


def _error_payload(err: ApiError, request_id: str) -> tuple[int, Any, dict[str, str]]:
    body = {
        "type": "error",
        "error": {"type": err.type, "message": err.message},
        "request_id": request_id,
    }
    return err.status, body, err.headers
