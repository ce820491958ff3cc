"""OpenAI Chat Completions: openai-compatible, openrouter, vercel-ai-gateway,
google's OpenAI endpoint, and openai/azure-openai when api=chat_completions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane_server.resolver_svc.upstream import openai_common
from modelplane_server.resolver_svc.upstream.errors import UpstreamError
from modelplane_server.resolver_svc.upstream.openai_common import OPENAI_FAMILY, int_field
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
    provider_is,
    provider_is_not,
)
from modelplane_server.resolver_svc.upstream.openai_chat_state import call_signature, detail_part, wire_messages
from modelplane_server.resolver_svc.upstream.parts import PartIndexer
from modelplane_server.resolver_svc.upstream.sse import SseParser
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
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
    UpstreamTarget,
    Usage,
    UsageEvent,
)

def _openai_not_reasoning(ctx: MappingContext) -> bool:
    # OpenAI reasoning models reject sampling parameters outright, except
    # with effort "none" (GPT-5.1 and later), where they are plain chat models.
    return not (
        ctx.target.provider_type in OPENAI_FAMILY and ctx.target.options.openai.reasoning_effort not in (None, "none")
    )


RULES: Final[tuple[OptionRule, ...]] = (
    # OpenAI deprecated max_tokens (reasoning models refuse it); others still speak it.
    OptionRule("openai.max_completion_tokens", "max_completion_tokens", provider_is(*OPENAI_FAMILY)),
    OptionRule(
        "max_output_tokens",
        "max_completion_tokens",
        all_of(provider_is(*OPENAI_FAMILY), option_unset("openai.max_completion_tokens")),
    ),
    OptionRule("max_output_tokens", "max_tokens", provider_is_not(*OPENAI_FAMILY)),
    OptionRule("temperature", "temperature", _openai_not_reasoning),
    OptionRule("top_p", "top_p", _openai_not_reasoning),
    # OpenAI, Azure, Gemini and Vercel do not accept top_k; vLLM-style servers and OpenRouter do.
    OptionRule("top_k", "top_k", provider_is("openai-compatible", "openrouter")),
    # Gemini rejects penalties on most models ("Penalty is not enabled").
    OptionRule(
        "presence_penalty",
        "presence_penalty",
        all_of(provider_is_not("google"), _openai_not_reasoning),
    ),
    OptionRule(
        "frequency_penalty",
        "frequency_penalty",
        all_of(provider_is_not("google"), _openai_not_reasoning),
    ),
    OptionRule("openai.reasoning_effort", "reasoning_effort", provider_is(*OPENAI_FAMILY)),
    # Only meaningful, and only accepted, when tools are sent.
    OptionRule(
        "openai.parallel_tool_calls",
        "parallel_tool_calls",
        all_of(provider_is(*OPENAI_FAMILY), has_tools),
    ),
    # Gemini's OpenAI endpoint reads its native thinking config from a literal
    # "extra_body" member of the JSON body.
    OptionRule(
        "google.thinking_budget",
        "extra_body.google.thinking_config.thinking_budget",
        provider_is("google"),
    ),
    OptionRule(
        "google.include_thoughts",
        "extra_body.google.thinking_config.include_thoughts",
        provider_is("google"),
    ),
    OptionRule(
        "google.thinking_level",
        "extra_body.google.thinking_config.thinking_level",
        provider_is("google"),
    ),
    OptionRule(
        "gateway.reasoning_enabled",
        "reasoning.enabled",
        provider_is("openrouter", "vercel-ai-gateway"),
    ),
    OptionRule(
        "gateway.reasoning_effort",
        "reasoning.effort",
        provider_is("openrouter", "vercel-ai-gateway"),
    ),
)

_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def finish_reason(raw: str | None) -> FinishReason:
    return _FINISH.get(raw or "", "other")


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    prompt = int_field(usage, "prompt_tokens")
    cached = int_field(usage, "prompt_tokens_details", "cached_tokens")
    cache_write = int_field(usage, "prompt_tokens_details", "cache_write_tokens")
    completion = int_field(usage, "completion_tokens")
    reasoning = int_field(usage, "completion_tokens_details", "reasoning_tokens")
    total = usage.get("total_tokens")
    output = completion
    # OpenAI counts reasoning inside completion_tokens; Gemini's endpoint does
    # not, which shows as a total that only adds up with reasoning on top.
    if reasoning and isinstance(total, int) and total == prompt + completion + reasoning:
        output = completion + reasoning
    return Usage(
        input_tokens=max(prompt - cached - cache_write, 0),
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=reasoning,
    )


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


class OpenAIChatProtocol(openai_common.OpenAIShared):
    name = "openai_chat"

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
            "messages": wire_messages(messages, target.provider_type),
        }
        if tools:
            body["tools"] = [_tool(t) for t in tools]
        apply_rules(body, MappingContext(target, bool(tools)), RULES)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return WireRequest(
            "POST",
            join_url(target.base_url, "chat/completions"),
            openai_common.json_headers(target, stream=stream),
            json_body(body),
        )

    def parse_response(self, body: bytes, request_id: str | None, target: UpstreamTarget) -> ChatResult:
        data = loads_object(body)
        choices = data.get("choices") or [{}]
        choice = choices[0]
        message = choice.get("message") or {}
        kind = target.provider_type
        parts: list[Part] = []
        text = message.get("content") or ""
        details = [p for p in (detail_part(d, kind) for d in message.get("reasoning_details") or []
                               if isinstance(d, Mapping)) if p is not None]
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        if details:
            parts.extend(details)  # the structured form of `reasoning`, which repeats it
        elif isinstance(reasoning, str) and reasoning:
            parts.append(ReasoningPart(text=reasoning, provider_type=kind))
        if "<thought>" in text:
            thoughts, text = split_thought_tags(text)
            parts.append(ReasoningPart(text=thoughts, provider_type=kind))
        if text:
            parts.append(TextPart(text))
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            parts.append(RefusalPart(message["refusal"]))
        for call in message.get("tool_calls") or []:
            signature = call_signature(call)
            parts.append(ToolCall(
                id=str(call.get("id") or ""),
                name=str((call.get("function") or {}).get("name") or ""),
                arguments_json=str((call.get("function") or {}).get("arguments") or ""),
                signature=signature,
                provider_type=kind if signature else "",
            ))
        return ChatResult.of(parts, finish_reason(choice.get("finish_reason")),
                             normalise_usage(data.get("usage") or {}), request_id or data.get("id"))

    def stream_parser(self, target: UpstreamTarget) -> ChatStreamParser:
        return ChatStreamParser(target)


class ChatStreamParser:
    """chat.completion.chunk SSE -> events.

    Usage may arrive in a chunk after the finish reason (include_usage), so
    UsageEvent and Finish are held back until [DONE] or the end of the body.
    """

    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._sse = SseParser()
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._response_id: str | None = None
        self._ended = False
        self._thoughts = ThoughtTagSplitter() if target.provider_type == "google" else None
        self._parts = PartIndexer()
        self._saw_details = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.feed(chunk):
            events.extend(self._on_data(sse.data))
        return events

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self._sse.finish():
            events.extend(self._on_data(sse.data))
        if self._thoughts is not None:
            events.extend(self._routed(self._thoughts.flush()))
        if self._finish is None and not self._ended:
            raise UpstreamError("unavailable", "stream ended before the reply was complete")
        if self._usage is not None:
            events.append(UsageEvent(self._usage))
        events.append(Finish(finish_reason(self._finish), self._response_id))
        return events

    def _on_data(self, data: str) -> list[StreamEvent]:
        if data.strip() == "[DONE]":
            self._ended = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamError("protocol_error", f"invalid JSON in stream: {exc}") from exc
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            raise openai_common.in_stream_error(chunk["error"], self._target)
        self._response_id = self._response_id or chunk.get("id")
        if chunk.get("usage"):
            self._usage = normalise_usage(chunk["usage"])
        events: list[StreamEvent] = []
        # Azure sends chunks with empty `choices` (content-filter results).
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            events.extend(self._on_delta(choice.get("delta") or {}))
            reason = choice.get("finish_reason")
            if reason and reason != "error":
                self._finish = reason
        return events

    def _on_delta(self, delta: Mapping[str, Any]) -> list[StreamEvent]:
        """Parts in the order parse_response builds them: reasoning, text,
        refusal, tool calls, each keyed so that repeated pieces extend it."""
        events: list[StreamEvent] = []
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            self._saw_details = True
            for position, detail in enumerate(details):
                if isinstance(detail, Mapping):
                    events.extend(self._on_detail(position, detail))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning and not self._saw_details:
            events.extend(self._reasoning(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            pieces: list[StreamEvent] = (self._thoughts.feed(content) if self._thoughts is not None
                                         else [TextDelta(content)])
            events.extend(self._routed(pieces))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events.append(RefusalDelta(refusal, self._parts("refusal")))
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            index = int(call.get("index", 0))
            signature = call_signature(call)
            events.append(
                ToolCallDelta(
                    index=index,
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments_delta=function.get("arguments") or "",
                    part_index=self._parts(("tool", index)),
                    signature=signature,
                    provider_type=self._target.provider_type if signature else "",
                )
            )
        return events

    def _reasoning(self, text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._parts.known("reasoning") is None:
            events.append(ReasoningState(self._parts("reasoning"), provider_type=self._target.provider_type))
        events.append(ReasoningDelta(text, self._parts("reasoning")))
        return events

    def _routed(self, pieces: list[StreamEvent]) -> list[StreamEvent]:
        """Text and <thought> pieces from the splitter, given their parts."""
        events: list[StreamEvent] = []
        for piece in pieces:
            if isinstance(piece, ReasoningDelta):
                events.extend(self._reasoning(piece.text))
            elif isinstance(piece, TextDelta):
                events.append(TextDelta(piece.text, self._parts("text")))
        return events

    def _on_detail(self, position: int, detail: Mapping[str, Any]) -> list[StreamEvent]:
        """A reasoning_details entry (OpenRouter, Vercel): pieces with the
        same index extend one part; text and summary pieces concatenate,
        signature pieces concatenate, data and id are set."""
        key = ("detail", detail.get("index", position))
        events: list[StreamEvent] = []
        part = self._parts.known(key)
        if part is None:
            part = self._parts(key)
            events.append(ReasoningState(part, summary=detail.get("type") == "reasoning.summary",
                                         provider_type=self._target.provider_type,
                                         format=str(detail.get("format") or "")))
        text = detail.get("text") if detail.get("type") == "reasoning.text" else detail.get("summary")
        if isinstance(text, str) and text:
            events.append(ReasoningDelta(text, part))
        state = ReasoningState(part, signature_delta=str(detail.get("signature") or ""),
                               redacted_data=str(detail.get("data") or ""), item_id=str(detail.get("id") or ""))
        if state != ReasoningState(part):
            events.append(state)
        return events


_OPEN, _CLOSE = "<thought>", "</thought>"


def split_thought_tags(text: str) -> tuple[str, str]:
    """(thoughts, answer) of a whole reply; Gemini's OpenAI endpoint wraps
    included thought summaries in <thought> tags inside the content."""
    splitter = ThoughtTagSplitter()
    events = splitter.feed(text) + splitter.flush()
    thoughts = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    return thoughts, answer


class ThoughtTagSplitter:
    """Routes text inside <thought>...</thought> to reasoning, even when a tag
    is split across chunks."""

    def __init__(self) -> None:
        self._inside = False
        self._pending = ""

    def feed(self, text: str) -> list[StreamEvent]:
        self._pending += text
        events: list[StreamEvent] = []
        while self._pending:
            tag = _CLOSE if self._inside else _OPEN
            at = self._pending.find(tag)
            if at >= 0:
                self._emit(events, self._pending[:at])
                self._pending = self._pending[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_suffix(self._pending, tag)
            self._emit(events, self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            break
        return events

    def flush(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self._emit(events, self._pending)
        self._pending = ""
        return events

    def _emit(self, events: list[StreamEvent], text: str) -> None:
        if text:
            events.append(ReasoningDelta(text) if self._inside else TextDelta(text))


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
