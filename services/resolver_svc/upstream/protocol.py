"""The small interface every wire protocol implements, plus shared helpers.

A protocol module is pure: it turns (target, messages, tools) into a
WireRequest and bytes back into results/events. It never does I/O; the
client owns connections, retries, deadlines and signing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelplane_server.resolver_svc.upstream.errors import UpstreamError
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    ModelOptions,
    StreamEvent,
    ToolDefinition,
    UpstreamTarget,
)


@dataclass(frozen=True)
class WireRequest:
    method: str
    url: str
    # Not in the repr: the headers carry the key (Authorization, x-api-key, api-key).
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = None
    # Set when the request must be signed with AWS SigV4 (bedrock, ambient
    # credentials): (service signing name, region).
    sigv4: tuple[str, str] | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class StreamParser(Protocol):
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Consume raw body bytes; return the events they complete.
        Raises UpstreamError for in-stream errors."""

    def finish(self) -> list[StreamEvent]:
        """The body ended; return the trailing events (always ends with Finish)
        or raise if the stream was cut short."""


class WireProtocol(Protocol):
    name: str

    def build_request(
        self,
        target: UpstreamTarget,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolDefinition],
        *,
        stream: bool,
    ) -> WireRequest: ...

    def parse_response(self, body: bytes, request_id: str | None, target: UpstreamTarget) -> ChatResult:
        """A 200 reply as a result. Raises UpstreamError for a failure
        inside it, with secrets=(target.api_key,) like every error built
        from the provider's words, so the request's key is always scrubbed."""

    def stream_parser(self, target: UpstreamTarget) -> StreamParser: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
    ) -> UpstreamError: ...

    def models_request(self, target: UpstreamTarget) -> WireRequest: ...

    def parse_models(self, body: bytes) -> list[str]: ...


def join_url(base: str, *parts: str) -> str:
    """Append path parts to a base URL without doubling or dropping slashes."""
    url = base.rstrip("/")
    for part in parts:
        if part.strip("/"):
            url += "/" + part.strip("/")
    return url


def alternating_turns(
    messages: Sequence[ChatMessage], content: Callable[[ChatMessage], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Anthropic Messages and Bedrock Converse want alternating user and
    assistant turns, with tool results inside a user turn: system messages
    are dropped (they travel separately) and consecutive user/tool messages
    merge into one user turn."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "system":
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = content(msg)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def json_body(payload: Mapping[str, Any]) -> bytes:
    # Compact and key-ordered as built, so golden tests compare bytes-stable bodies.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise UpstreamError("protocol_error", f"upstream sent invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UpstreamError("protocol_error", "upstream sent JSON that is not an object")
    return value


# --- option tables -------------------------------------------------------
#
# A protocol's option mapping is a tuple of OptionRule rows: which model
# option goes to which (dotted) wire field, and when it is left out. The
# rows are the documentation: docs/upstream.md mirrors them.


@dataclass(frozen=True)
class MappingContext:
    target: UpstreamTarget
    has_tools: bool
    # Per-request facts a protocol derived from the conversation (e.g.
    # claude.WITHOUT_THINKING) that rules may depend on.
    flags: frozenset[str] = frozenset()


Condition = Callable[[MappingContext], bool]


@dataclass(frozen=True)
class OptionRule:
    option: str  # dotted path into ModelOptions, e.g. "anthropic.effort"
    wire: str  # dotted path into the request body, e.g. "output_config.effort"
    only_if: Condition | None = None  # None: always when the option is set
    transform: Callable[[Any], Any] | None = None


def option_value(options: ModelOptions, dotted: str) -> Any:
    value: Any = options
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def set_dotted(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = body
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def apply_rules(body: dict[str, Any], ctx: MappingContext, rules: Sequence[OptionRule]) -> None:
    for rule in rules:
        value = option_value(ctx.target.options, rule.option)
        if value is None:
            continue
        if rule.only_if is not None and not rule.only_if(ctx):
            continue
        set_dotted(body, rule.wire, rule.transform(value) if rule.transform else value)


def provider_is(*types: str) -> Condition:
    return lambda ctx: ctx.target.provider_type in types


def provider_is_not(*types: str) -> Condition:
    return lambda ctx: ctx.target.provider_type not in types


def option_unset(dotted: str) -> Condition:
    return lambda ctx: option_value(ctx.target.options, dotted) is None


def has_tools(ctx: MappingContext) -> bool:
    return ctx.has_tools


def all_of(*conditions: Condition) -> Condition:
    return lambda ctx: all(c(ctx) for c in conditions)


def error_fields(body: bytes) -> tuple[str | None, str]:
    """(code, message) from the common `{"error": {...}}` / `{"message": ...}` shapes."""
    try:
        value = json.loads(body)
    except ValueError:
        return None, body.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0]  # Gemini's OpenAI endpoint sometimes wraps errors in a list
    if not isinstance(value, dict):
        return None, str(value)
    err = value.get("error", value)
    if isinstance(err, str):
        return None, err
    if not isinstance(err, dict):
        return None, json.dumps(value)
    code = err.get("code") or err.get("type") or err.get("status")
    message = str(err.get("message") or json.dumps(err))
    # OpenRouter and Vercel wrap the upstream's own error ("Provider returned
    # error"); its words are the useful part.
    raw = (err.get("metadata") or {}).get("raw") if isinstance(err.get("metadata"), dict) else None
    if isinstance(raw, str) and raw:
        message = f"{message}: {raw}"
    return (str(code) if code is not None else None), message
