"""Anthropic Messages API (x-api-key + anthropic-version)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

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
from modelplane_server.resolver_svc.upstream.sse import SseParser
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
    ModelOptions,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    UpstreamTarget,
    Usage,
    UsageEvent,
)

ANTHROPIC_VERSION: Final = "2023-06-01"
# max_tokens is required by the Messages API; used when the model sets none.
DEFAULT_MAX_TOKENS: Final = 8192


def thinking_enabled(ctx: MappingContext) -> bool:
    return ctx.target.options.anthropic.thinking_budget_tokens is not None


def _thinking_disabled(ctx: MappingContext) -> bool:
    # With extended thinking on, Anthropic rejects temperature and top_k and
    # narrows top_p; leaving all three out is the safe mapping.
    return not thinking_enabled(ctx)


# Anthropic has no presence/frequency penalty: left out.
RULES: Final[tuple[OptionRule, ...]] = (
    OptionRule("temperature", "temperature", _thinking_disabled),
    OptionRule("top_p", "top_p", _thinking_disabled),
    OptionRule("top_k", "top_k", _thinking_disabled),
    OptionRule("anthropic.thinking_budget_tokens", "thinking.type", transform=lambda _: "enabled"),
    OptionRule("anthropic.thinking_budget_tokens", "thinking.budget_tokens"),
    OptionRule("anthropic.effort", "output_config.effort"),
)

_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_KINDS: Final[dict[str, ErrorKind]] = {
    "invalid_request_error": "bad_request",
    "authentication_error": "auth_failed",
    "permission_error": "auth_failed",
    "not_found_error": "model_not_found",
    "request_too_large": "context_too_long",
    "rate_limit_error": "rate_limited",
    "api_error": "unavailable",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


def max_tokens(options: ModelOptions) -> int:
    if options.max_output_tokens is not None:
        return options.max_output_tokens
    budget = options.anthropic.thinking_budget_tokens
    # budget_tokens must stay below max_tokens, so leave room for the answer.
    return DEFAULT_MAX_TOKENS + (budget or 0)


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    # input_tokens already excludes cache reads and writes; output_tokens
    # includes thinking, which Anthropic does not count separately.
    return Usage(
        input_tokens=int_field(usage, "input_tokens"),
        cache_read_tokens=int_field(usage, "cache_read_input_tokens"),
        cache_write_tokens=int_field(usage, "cache_creation_input_tokens"),
        output_tokens=int_field(usage, "output_tokens"),
        reasoning_tokens=0,
    )


def tool_input(arguments_json: str) -> Any:
    try:
        value = json.loads(arguments_json) if arguments_json else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _content(msg: ChatMessage) -> list[dict[str, Any]]:
    if msg.role == "tool":
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.text}]
    blocks: list[dict[str, Any]] = []
    if msg.text:  # empty text blocks are rejected
        blocks.append({"type": "text", "text": msg.text})
    for call in msg.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call.arguments_json)}
        )
    return blocks


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return alternating_turns(messages, _content)


def _system(messages: Sequence[ChatMessage]) -> str:
    return "\n\n".join(m.text for m in messages if m.role == "system" and m.text)


def error_from(kind_hint: str | None, message: str, status: int | None, secret: str | None) -> UpstreamError:
    kind = _ERROR_KINDS.get(kind_hint or "")
    if kind is None:
        kind = kind_for_status(status or 502, kind_hint, message)
    if kind == "bad_request" and looks_like_context_too_long(message):
        kind = "context_too_long"
    return UpstreamError(kind, message, http_status=status, provider_code=kind_hint, secrets=(secret,))


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
        body["messages"] = _messages(messages)
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        apply_rules(body, MappingContext(target, bool(tools)), RULES)
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
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        for block in data.get("content") or []:
            kind = block.get("type")
            if kind == "text":
                text.append(block.get("text") or "")
            elif kind == "thinking":
                reasoning.append(block.get("thinking") or "")
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        str(block.get("id")), str(block.get("name")), json.dumps(block.get("input") or {})
                    )
                )
        return ChatResult(
            text="".join(text),
            reasoning="".join(reasoning),
            tool_calls=tuple(calls),
            finish_reason=_FINISH.get(data.get("stop_reason") or "", "other"),
            usage=normalise_usage(data.get("usage") or {}),
            upstream_request_id=request_id or data.get("id"),
        )

    def stream_parser(self, target: UpstreamTarget) -> AnthropicStreamParser:
        return AnthropicStreamParser(target)

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
    ) -> UpstreamError:
        code, message = error_fields(body)
        return error_from(code, message, status, target.api_key)

    def models_request(self, target: UpstreamTarget) -> WireRequest:
        headers = self._headers(target, stream=False)
        del headers["Content-Type"]
        return WireRequest("GET", join_url(target.base_url, "v1/models"), headers)

    def parse_models(self, body: bytes) -> list[str]:
        data = loads_object(body).get("data") or []
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


class AnthropicStreamParser:
    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._sse = SseParser()
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._message_id: str | None = None
        self._tool_blocks: dict[int, int] = {}  # content block index -> tool-call ordinal
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
            err = event.get("error") or {}
            raise error_from(err.get("type"), str(err.get("message") or err), None, self._target.api_key)
        if kind == "message_start":
            message = event.get("message") or {}
            self._message_id = message.get("id")
            self._usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                ordinal = len(self._tool_blocks)
                self._tool_blocks[int(event.get("index", 0))] = ordinal
                return [ToolCallDelta(ordinal, block.get("id"), block.get("name"), "")]
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(block["text"])]
        elif kind == "content_block_delta":
            return self._on_delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
            # Counts in message_delta are cumulative: they replace, not add.
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self._stopped = True
        return []  # ping, content_block_stop and unknown events carry nothing for us

    def _on_delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [ReasoningDelta(delta["thinking"])]
        if kind == "input_json_delta" and index in self._tool_blocks and delta.get("partial_json"):
            return [ToolCallDelta(self._tool_blocks[index], None, None, delta["partial_json"])]
        return []
