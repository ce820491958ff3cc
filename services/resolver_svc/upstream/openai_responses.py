"""OpenAI Responses API: the default for openai and azure-openai."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane_server.resolver_svc.upstream import openai_common
from modelplane_server.resolver_svc.upstream.errors import ErrorKind, UpstreamError, looks_like_context_too_long
from modelplane_server.resolver_svc.upstream.openai_common import int_field
from modelplane_server.resolver_svc.upstream.protocol import (
    MappingContext,
    OptionRule,
    WireRequest,
    all_of,
    apply_rules,
    has_tools,
    join_url,
    json_body,
    loads_object,
    option_unset,
)
from modelplane_server.resolver_svc.upstream.sse import SseParser
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
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


def _not_reasoning(ctx: MappingContext) -> bool:
    # Reasoning models reject temperature/top_p.
    return ctx.target.options.openai.reasoning_effort is None


# The Responses API has no top_k, presence_penalty or frequency_penalty: left out.
RULES: Final[tuple[OptionRule, ...]] = (
    OptionRule("openai.max_completion_tokens", "max_output_tokens"),
    OptionRule("max_output_tokens", "max_output_tokens", option_unset("openai.max_completion_tokens")),
    OptionRule("temperature", "temperature", _not_reasoning),
    OptionRule("top_p", "top_p", _not_reasoning),
    OptionRule("openai.reasoning_effort", "reasoning.effort"),
    # Ask for reasoning summaries so reasoning can be shown at all.
    OptionRule("openai.reasoning_effort", "reasoning.summary", transform=lambda _: "auto"),
    OptionRule("openai.parallel_tool_calls", "parallel_tool_calls", all_of(has_tools)),
)


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    total_input = int_field(usage, "input_tokens")
    cached = int_field(usage, "input_tokens_details", "cached_tokens")
    return Usage(
        input_tokens=max(total_input - cached, 0),
        cache_read_tokens=cached,
        cache_write_tokens=0,
        output_tokens=int_field(usage, "output_tokens"),
        reasoning_tokens=int_field(usage, "output_tokens_details", "reasoning_tokens"),
    )


def _input_items(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": msg.tool_call_id or "", "output": msg.text}
            )
            continue
        if msg.text or not msg.tool_calls:
            items.append({"role": msg.role, "content": msg.text})
        for call in msg.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments_json,
                }
            )
    return items


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    # strict defaults to true here, which rejects ordinary JSON schemas.
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": False,
    }


def _finish(response: Mapping[str, Any], saw_tool_call: bool) -> FinishReason:
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        if reason == "max_output_tokens":
            return "length"
        if reason == "content_filter":
            return "content_filter"
        return "other"
    if status == "completed":
        return "tool_calls" if saw_tool_call else "stop"
    return "other"


# A response with status "failed" (unary, or a response.failed event) names
# its cause in error.code. Most causes are the request's (invalid_prompt, an
# image it cannot read) and fail again the same way: only a server-side cause
# is worth another attempt.
_FAILED_RETRYABLE: Final = frozenset({"server_error", "overloaded"})


def _failed(response: Mapping[str, Any], target: UpstreamTarget) -> UpstreamError:
    """The error of a failed response, classified by its code; the message is
    scrubbed of the request's key whatever shape the key has."""
    error = response.get("error")
    if not isinstance(error, Mapping):
        error = {}
    raw = error.get("code") or error.get("type")
    code = str(raw) if raw else None
    message = str(error.get("message") or "response failed")
    code_l = (code or "").lower()
    kind: ErrorKind
    if code_l == "server_error":
        kind = "unavailable"
    elif "overloaded" in code_l:
        kind = "overloaded"
    elif code_l == "insufficient_quota":
        kind = "insufficient_quota"
    elif "rate_limit" in code_l:
        kind = "rate_limited"
    elif looks_like_context_too_long(code, message):
        kind = "context_too_long"
    else:
        kind = "bad_request"
    return UpstreamError(kind, message, provider_code=code, should_retry=code_l in _FAILED_RETRYABLE,
                         secrets=(target.api_key,))


class OpenAIResponsesProtocol(openai_common.OpenAIShared):
    name = "openai_responses"

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
            "input": _input_items(messages),
            # modelplane keeps the conversation; nothing should be stored upstream.
            "store": False,
        }
        if tools:
            body["tools"] = [_tool(t) for t in tools]
        apply_rules(body, MappingContext(target, bool(tools)), RULES)
        if stream:
            body["stream"] = True
        return WireRequest(
            "POST",
            join_url(target.base_url, "responses"),
            openai_common.json_headers(target, stream=stream),
            json_body(body),
        )

    def parse_response(self, body: bytes, request_id: str | None, target: UpstreamTarget) -> ChatResult:
        data = loads_object(body)
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        for item in data.get("output") or []:
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or []:
                    if part.get("type") == "output_text":
                        text.append(part.get("text") or "")
            elif kind == "reasoning":
                for part in item.get("summary") or []:
                    reasoning.append(part.get("text") or "")
            elif kind == "function_call":
                calls.append(
                    ToolCall(
                        id=str(item.get("call_id") or ""),
                        name=str(item.get("name") or ""),
                        arguments_json=str(item.get("arguments") or ""),
                    )
                )
        if data.get("status") == "failed":
            raise _failed(data, target)
        return ChatResult(
            text="".join(text),
            reasoning="\n\n".join(reasoning),
            tool_calls=tuple(calls),
            finish_reason=_finish(data, bool(calls)),
            usage=normalise_usage(data.get("usage") or {}),
            upstream_request_id=request_id or data.get("id"),
        )

    def stream_parser(self, target: UpstreamTarget) -> ResponsesStreamParser:
        return ResponsesStreamParser(target)


class ResponsesStreamParser:
    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._sse = SseParser()
        self._calls: dict[int, int] = {}  # output_index -> tool-call ordinal
        self._args_seen: set[int] = set()
        self._done: list[StreamEvent] | None = None
        self._response_id: str | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.feed(chunk):
            events.extend(self._on_event(sse.data))
        return events

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.finish():
            events.extend(self._on_event(sse.data))
        if self._done is None:
            raise UpstreamError("unavailable", "stream ended before the reply was complete")
        return events + self._done

    def _on_event(self, data: str) -> list[StreamEvent]:
        if data.strip() == "[DONE]":
            return []
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise UpstreamError("protocol_error", f"invalid JSON in stream: {exc}") from exc
        kind = event.get("type", "")
        if kind == "error":
            raise openai_common.in_stream_error(event.get("error") or event, self._target)
        if kind == "response.failed":
            raise _failed(event.get("response") or {}, self._target)
        if kind in ("response.created", "response.in_progress"):
            self._response_id = (event.get("response") or {}).get("id")
        elif kind == "response.output_text.delta":
            return [TextDelta(event["delta"])] if event.get("delta") else []
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [ReasoningDelta(event["delta"])] if event.get("delta") else []
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                new = len(self._calls)
                self._calls[int(event.get("output_index", new))] = new
                return [ToolCallDelta(new, item.get("call_id"), item.get("name"), "")]
        elif kind == "response.function_call_arguments.delta":
            known = self._calls.get(int(event.get("output_index", -1)))
            if known is not None and event.get("delta"):
                self._args_seen.add(known)
                return [ToolCallDelta(known, None, None, event["delta"])]
        elif kind == "response.output_item.done":
            # Some servers send a call's arguments only in the finished item.
            item = event.get("item") or {}
            done = self._calls.get(int(event.get("output_index", -1)))
            if done is not None and done not in self._args_seen and item.get("arguments"):
                self._args_seen.add(done)
                return [ToolCallDelta(done, None, None, item["arguments"])]
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            self._done = [
                UsageEvent(normalise_usage(response.get("usage") or {})),
                Finish(_finish(response, bool(self._calls)), response.get("id") or self._response_id),
            ]
        return []
