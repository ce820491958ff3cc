"""Anthropic Messages API (x-api-key + anthropic-version)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane_server.resolver_svc.upstream import claude
from modelplane_server.resolver_svc.upstream.errors import (
    ErrorKind,
    UpstreamError,
    kind_for_status,
    looks_like_context_too_long,
)
from modelplane_server.resolver_svc.upstream.openai_common import int_field
from modelplane_server.resolver_svc.upstream.protocol import (
    alternating_turns,
    MappingContext,
    OptionRule,
    WireRequest,
    apply_rules,
    error_fields,
    join_url,
    json_body,
    loads_object,
)
from modelplane_server.resolver_svc.upstream.parts import PartIndexer, own, texts
from modelplane_server.resolver_svc.upstream.sse import SseParser
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
    ModelOptions,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ReasoningState,
    RefusalDelta,
    RefusalPart,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResult,
    UpstreamTarget,
    Usage,
    UsageEvent,
)

ANTHROPIC_VERSION: Final = "2023-06-01"
# max_tokens is required by the Messages API; used when the model sets none.
DEFAULT_MAX_TOKENS: Final = 8192
PROVIDER_TYPE: Final = "anthropic"

# Anthropic has no presence/frequency penalty: left out.
RULES: Final[tuple[OptionRule, ...]] = (
    OptionRule("temperature", "temperature", claude.sampling_allowed),
    OptionRule("top_p", "top_p", claude.sampling_allowed),
    OptionRule("top_k", "top_k", claude.sampling_allowed),
    *(OptionRule(option, wire, condition) for option, wire, condition in claude.thinking_rules("")),
    OptionRule("anthropic.effort", "output_config.effort"),
)

_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}

_ERROR_KINDS: Final[dict[str, ErrorKind]] = {
    "invalid_request_error": "bad_request",
    "authentication_error": "auth_failed",
    "permission_error": "auth_failed",
    "not_found_error": "model_not_found",
    "request_too_large": "context_too_long",
    "rate_limit_error": "rate_limited",
    "billing_error": "insufficient_quota",
    "api_error": "unavailable",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}

# error.details.error_code values (anthropic SDK types/shared/*_error.py)
# that mean the account's money or spend limit ran out: no retry helps,
# whatever the status (429 for the first two, 402 for the linked ones).
QUOTA_ERROR_CODES: Final = frozenset({
    "enforced_spend_limit_reached",
    "contract_spend_limit_reached",
    "linked_organization_spend_limit_reached",
    "linked_organization_billing_unavailable",
})
# A user-set spend limit and an empty credit balance come as a plain 400
# invalid_request_error; only the message tells them apart.
_QUOTA_MESSAGES: Final = ("reached your specified api usage limits", "reached your specified workspace api usage limits",
                          "credit balance is too low")


def max_tokens(options: ModelOptions) -> int:
    if options.max_output_tokens is not None:
        return options.max_output_tokens
    budget = options.anthropic.thinking_budget_tokens if options.anthropic.thinking_type == "enabled" else None
    # budget_tokens must stay below max_tokens, so leave room for the answer.
    return DEFAULT_MAX_TOKENS + (budget or 0)


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    # input_tokens already excludes cache reads and writes; output_tokens
    # includes thinking, which output_tokens_details.thinking_tokens reports.
    return Usage(
        input_tokens=int_field(usage, "input_tokens"),
        cache_read_tokens=int_field(usage, "cache_read_input_tokens"),
        cache_write_tokens=_cache_writes(usage),
        output_tokens=int_field(usage, "output_tokens"),
        reasoning_tokens=int_field(usage, "output_tokens_details", "thinking_tokens"),
    )


def _cache_writes(usage: Mapping[str, Any]) -> int:
    # cache_creation splits the writes by TTL; its sum is the total when the
    # flat counter is missing.
    if usage.get("cache_creation_input_tokens") is not None:
        return int_field(usage, "cache_creation_input_tokens")
    return int_field(usage, "cache_creation", "ephemeral_5m_input_tokens") + int_field(
        usage, "cache_creation", "ephemeral_1h_input_tokens")


def _is_thinking(block: Mapping[str, Any]) -> bool:
    return block.get("type") in ("thinking", "redacted_thinking")


def _is_tool_result(block: Mapping[str, Any]) -> bool:
    return block.get("type") == "tool_result"


def _reasoning_block(part: ReasoningPart) -> dict[str, Any] | None:
    if not own(PROVIDER_TYPE, part.provider_type):
        return None  # another type's reasoning means nothing to Claude here
    if part.redacted_data:
        return {"type": "redacted_thinking", "data": part.redacted_data}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None  # readable text without a signature cannot be replayed


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None  # empty text blocks are rejected
    if isinstance(part, ReasoningPart):
        return _reasoning_block(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": claude.tool_input(part.arguments_json)}
    if isinstance(part, ToolResult):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id, "content": part.text}
        if part.is_error:
            block["is_error"] = True
        return block
    return None  # refusals are not replayed


def _content(msg: ChatMessage) -> list[dict[str, Any]]:
    return [b for b in (_block(p) for p in msg.content_parts()) if b is not None]


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return alternating_turns(messages, _content)


def _system(messages: Sequence[ChatMessage]) -> str:
    return "\n\n".join(t for m in messages if m.role == "system" for t in texts(m) if t)


def is_quota(code: str | None, message: str) -> bool:
    return code in QUOTA_ERROR_CODES or any(hint in message.lower() for hint in _QUOTA_MESSAGES)


def error_from(error: Mapping[str, Any], status: int | None, secret: str | None) -> UpstreamError:
    """The error of an `{"type": "error", "error": {...}}` body or stream event."""
    kind_hint = str(error.get("type") or "") or None
    message = str(error.get("message") or error)
    details = error.get("details")
    error_code = details.get("error_code") if isinstance(details, Mapping) else None
    code = str(error_code) if isinstance(error_code, str) else None
    kind = _ERROR_KINDS.get(kind_hint or "")
    if kind is None:
        kind = kind_for_status(status or 502, kind_hint, message)
    if is_quota(code, message):
        kind = "insufficient_quota"
    elif kind == "bad_request" and looks_like_context_too_long(message):
        kind = "context_too_long"
    return UpstreamError(kind, message, http_status=status, provider_code=code or kind_hint,
                         should_retry=False if kind == "insufficient_quota" else None, secrets=(secret,))


class AnthropicMessagesProtocol:
    name = "anthropic_messages"

    def build_request(
        self,
        target: UpstreamTarget,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolDefinition],
        *,
        stream: bool,
    ) -> WireRequest:
        body: dict[str, Any] = {
            "model": target.model_identifier,
            "max_tokens": max_tokens(target.options),
        }
        system = _system(messages)
        if system:
            body["system"] = system
        wire_messages = _messages(messages)
        wire_messages, flags = claude.replayable(wire_messages, target.options.anthropic.thinking_on,
                                                 _is_tool_result, _is_thinking)
        body["messages"] = wire_messages
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        apply_rules(body, MappingContext(target, bool(tools), flags), RULES)
        if stream:
            body["stream"] = True
        return WireRequest(
            "POST", join_url(target.base_url, "v1/messages"), self._headers(target, stream), json_body(body)
        )

    def _headers(self, target: UpstreamTarget, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    def parse_response(self, body: bytes, request_id: str | None, target: UpstreamTarget) -> ChatResult:
        data = loads_object(body)
        parts: list[Part] = []
        for block in data.get("content") or []:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                parts.append(TextPart(block["text"]))
            elif kind == "thinking":
                parts.append(ReasoningPart(text=block.get("thinking") or "", signature=block.get("signature") or "",
                                           provider_type=PROVIDER_TYPE))
            elif kind == "redacted_thinking":
                parts.append(ReasoningPart(redacted_data=block.get("data") or "", provider_type=PROVIDER_TYPE))
            elif kind == "tool_use":
                parts.append(ToolCall(str(block.get("id")), str(block.get("name")),
                                      json.dumps(block.get("input") or {})))
        stop_reason = data.get("stop_reason") or ""
        if stop_reason == "refusal":
            parts.append(RefusalPart(claude.refusal_text(data.get("stop_details"))))
        return ChatResult.of(parts, _FINISH.get(stop_reason, "other"), normalise_usage(data.get("usage") or {}),
                             request_id or data.get("id"))

    def stream_parser(self, target: UpstreamTarget) -> AnthropicStreamParser:
        return AnthropicStreamParser(target)

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
    ) -> UpstreamError:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            _, message = error_fields(body)
            error = {"message": message}
        return error_from(error, status, target.api_key)

    def models_request(self, target: UpstreamTarget) -> WireRequest:
        headers = self._headers(target, stream=False)
        del headers["Content-Type"]
        return WireRequest("GET", join_url(target.base_url, "v1/models"), headers)

    def parse_models(self, body: bytes) -> list[str]:
        data = loads_object(body).get("data") or []
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


class AnthropicStreamParser:
    """Content blocks become parts: each block's part index is allocated at
    its first event (a text block that never says anything takes none,
    exactly as parse_response skips empty text blocks)."""

    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._sse = SseParser()
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._message_id: str | None = None
        self._tool_blocks: dict[int, int] = {}  # content block index -> tool-call ordinal
        self._parts = PartIndexer()  # content block index (or "refusal") -> part index
        self._stopped = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.feed(chunk):
            events.extend(self._on_event(sse.event, sse.data))
        return events

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.finish():
            events.extend(self._on_event(sse.event, sse.data))
        if not self._stopped:
            raise UpstreamError("unavailable", "stream ended before message_stop")
        return events + [
            UsageEvent(normalise_usage(self._usage)),
            Finish(_FINISH.get(self._stop_reason or "", "other"), self._message_id),
        ]

    def _on_event(self, name: str, data: str) -> list[StreamEvent]:
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise UpstreamError("protocol_error", f"invalid JSON in stream: {exc}") from exc
        kind = event.get("type") or name
        if kind == "error":
            err = event.get("error")
            raise error_from(err if isinstance(err, dict) else {"message": str(err)}, None, self._target.api_key)
        if kind == "message_start":
            message = event.get("message") or {}
            self._message_id = message.get("id")
            self._usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            return self._on_start(int(event.get("index", 0)), event.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._on_delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            # Counts in message_delta are cumulative: they replace, not add.
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            if delta.get("stop_reason") == "refusal":
                return [RefusalDelta(claude.refusal_text(delta.get("stop_details")), self._parts("refusal"))]
        elif kind == "message_stop":
            self._stopped = True
        return []  # ping, content_block_stop and unknown events carry nothing for us

    def _on_start(self, index: int, block: Mapping[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        if kind == "tool_use":
            ordinal = len(self._tool_blocks)
            self._tool_blocks[index] = ordinal
            return [ToolCallDelta(ordinal, block.get("id"), block.get("name"), "", self._parts(index))]
        if kind == "thinking":
            events: list[StreamEvent] = [ReasoningState(self._parts(index), signature_delta=block.get("signature") or "",
                                                        provider_type=PROVIDER_TYPE)]
            if block.get("thinking"):
                events.append(ReasoningDelta(block["thinking"], self._parts(index)))
            return events
        if kind == "redacted_thinking":  # arrives whole, no deltas
            return [ReasoningState(self._parts(index), redacted_data=block.get("data") or "",
                                   provider_type=PROVIDER_TYPE)]
        if kind == "text" and block.get("text"):
            return [TextDelta(block["text"], self._parts(index))]
        return []

    def _on_delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"], self._parts(index))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [ReasoningDelta(delta["thinking"], self._parts(index))]
        if kind == "signature_delta" and delta.get("signature"):
            return [ReasoningState(self._parts(index), signature_delta=delta["signature"])]
        if kind == "input_json_delta" and index in self._tool_blocks and delta.get("partial_json"):
            return [ToolCallDelta(self._tool_blocks[index], None, None, delta["partial_json"], self._parts(index))]
        return []
