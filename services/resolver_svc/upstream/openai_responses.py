"""OpenAI Responses API: the default for openai and azure-openai."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from modelplane_server.resolver_svc.upstream import openai_common
from modelplane_server.resolver_svc.upstream.errors import (
    QUOTA_CODES,
    ErrorKind,
    UpstreamError,
    looks_like_context_too_long,
)
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
from modelplane_server.resolver_svc.upstream.parts import PartIndexer, own, texts
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
    ToolResult,
    UpstreamTarget,
    Usage,
    UsageEvent,
)


def _sampling_allowed(ctx: MappingContext) -> bool:
    # Reasoning models reject temperature/top_p, except with effort "none"
    # (GPT-5.1 and later), where they are plain chat models.
    return ctx.target.options.openai.reasoning_effort in (None, "none")


def _reasoning_on(ctx: MappingContext) -> bool:
    return ctx.target.options.openai.reasoning_effort not in (None, "none")


# The Responses API has no top_k, presence_penalty or frequency_penalty: left out.
RULES: Final[tuple[OptionRule, ...]] = (
    OptionRule("openai.max_completion_tokens", "max_output_tokens"),
    OptionRule("max_output_tokens", "max_output_tokens", option_unset("openai.max_completion_tokens")),
    OptionRule("temperature", "temperature", _sampling_allowed),
    OptionRule("top_p", "top_p", _sampling_allowed),
    OptionRule("openai.reasoning_effort", "reasoning.effort"),
    # Ask for reasoning summaries so reasoning can be shown at all.
    OptionRule("openai.reasoning_effort", "reasoning.summary", _reasoning_on, transform=lambda _: "auto"),
    # store is false, so reasoning survives a tool loop only as encrypted
    # items the caller replays: ask for them.
    OptionRule("openai.reasoning_effort", "include", transform=lambda _: ["reasoning.encrypted_content"]),
    OptionRule("openai.parallel_tool_calls", "parallel_tool_calls", all_of(has_tools)),
)


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    # input_tokens counts every prompt token, cache reads and writes included.
    total_input = int_field(usage, "input_tokens")
    cached = int_field(usage, "input_tokens_details", "cached_tokens")
    cache_write = int_field(usage, "input_tokens_details", "cache_write_tokens")
    return Usage(
        input_tokens=max(total_input - cached - cache_write, 0),
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=int_field(usage, "output_tokens"),
        reasoning_tokens=int_field(usage, "output_tokens_details", "reasoning_tokens"),
    )


def _input_items(messages: Sequence[ChatMessage], provider_type: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role == "assistant":
            items.extend(_assistant_items(msg.content_parts(), provider_type))
            continue
        for part in msg.content_parts():
            if isinstance(part, ToolResult):
                items.append({"type": "function_call_output", "call_id": part.tool_call_id, "output": part.text})
        if msg.role != "tool":
            items.append({"role": msg.role, "content": "".join(texts(msg))})
    return items


def _assistant_items(parts: Sequence[Part], provider_type: str) -> list[dict[str, Any]]:
    """An assistant turn as input items, in order. A reasoning item goes back
    (id, summaries, encrypted_content) only when it came from this provider
    type, carries encrypted content, and something it produced (text or a
    call) follows it: the API refuses a reasoning item without its following
    item. The calls after a replayed reasoning item keep their item ids,
    which pair them with it; elsewhere ids are left out, since an item id
    promises its reasoning item (the API refuses a `fc_`/`msg_` item whose
    reasoning is missing)."""
    items: list[dict[str, Any]] = []
    paired = False
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, ReasoningPart):
            group = [part]
            while (i + len(group) < len(parts) and isinstance(parts[i + len(group)], ReasoningPart)
                   and cast(ReasoningPart, parts[i + len(group)]).item_id == part.item_id and part.item_id):
                group.append(cast(ReasoningPart, parts[i + len(group)]))
            i += len(group)
            item = _reasoning_item(group, provider_type)
            paired = item is not None and any(_produced(p) for p in _until_reasoning(parts[i:]))
            if paired and item is not None:
                items.append(item)
            continue
        i += 1
        if isinstance(part, ToolCall):
            call: dict[str, Any] = {"type": "function_call", "call_id": part.id, "name": part.name,
                                    "arguments": part.arguments_json}
            if paired and part.item_id and own(provider_type, part.provider_type):
                call["id"] = part.item_id
            items.append(call)
        elif isinstance(part, TextPart) and part.text:
            items.append({"role": "assistant", "content": part.text})
    return items


def _produced(part: Part) -> bool:
    """Parts that become an output item after a reasoning item."""
    return isinstance(part, ToolCall) or (isinstance(part, TextPart) and bool(part.text))


def _until_reasoning(parts: Sequence[Part]) -> Sequence[Part]:
    for n, part in enumerate(parts):
        if isinstance(part, ReasoningPart):
            return parts[:n]
    return parts


def _reasoning_item(group: Sequence[ReasoningPart], provider_type: str) -> dict[str, Any] | None:
    first = group[0]
    encrypted = next((p.encrypted_content for p in group if p.encrypted_content), "")
    if not (first.item_id and encrypted and own(provider_type, first.provider_type)):
        return None
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": first.item_id,
        "summary": [{"type": "summary_text", "text": p.text} for p in group if p.summary and p.text],
    }
    content = [{"type": "reasoning_text", "text": p.text} for p in group if not p.summary and p.text]
    if content:
        item["content"] = content
    item["encrypted_content"] = encrypted
    return item


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
    elif code_l in QUOTA_CODES:
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
            "input": _input_items(messages, target.provider_type),
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
        if data.get("status") == "failed":
            raise _failed(data, target)
        parts: list[Part] = []
        for item in data.get("output") or []:
            kind = item.get("type")
            if kind == "message":
                for content in item.get("content") or []:
                    if content.get("type") == "output_text" and content.get("text"):
                        parts.append(TextPart(content["text"]))
                    elif content.get("type") == "refusal" and content.get("refusal"):
                        parts.append(RefusalPart(content["refusal"]))
            elif kind == "reasoning":
                parts.extend(_reasoning_parts(item, target.provider_type))
            elif kind == "function_call":
                parts.append(ToolCall(
                    id=str(item.get("call_id") or ""),
                    name=str(item.get("name") or ""),
                    arguments_json=str(item.get("arguments") or ""),
                    item_id=str(item.get("id") or ""),
                    provider_type=target.provider_type if item.get("id") else "",
                ))
        saw_call = any(isinstance(p, ToolCall) for p in parts)
        return ChatResult.of(parts, _finish(data, saw_call), normalise_usage(data.get("usage") or {}),
                             request_id or data.get("id"))

    def stream_parser(self, target: UpstreamTarget) -> ResponsesStreamParser:
        return ResponsesStreamParser(target)


def _reasoning_parts(item: Mapping[str, Any], provider_type: str) -> list[ReasoningPart]:
    """One part per summary (the first always, even empty: it anchors the
    item's id and encrypted content), then one per raw reasoning text."""
    item_id = str(item.get("id") or "")
    summaries = [str(s.get("text") or "") for s in item.get("summary") or []] or [""]
    contents = [str(c.get("text") or "") for c in item.get("content") or [] if c.get("text")]
    parts = [ReasoningPart(text=text, summary=True, item_id=item_id, provider_type=provider_type)
             for text in summaries]
    parts += [ReasoningPart(text=text, item_id=item_id, provider_type=provider_type) for text in contents]
    if item.get("encrypted_content"):
        parts[0] = dataclasses.replace(parts[0], encrypted_content=str(item["encrypted_content"]))
    return parts


class ResponsesStreamParser:
    """Output items become parts keyed by output_index (and summary or
    content index); see _reasoning_parts for the reasoning layout."""

    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._sse = SseParser()
        self._calls: dict[int, int] = {}  # output_index -> tool-call ordinal
        self._args_seen: set[int] = set()
        self._reasoning_ids: dict[int, str] = {}  # output_index -> reasoning item id
        self._texted: set[tuple[int, str, int]] = set()  # reasoning texts that arrived as deltas
        self._parts = PartIndexer()
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

    def _reasoning_part(self, output_index: int, key: tuple[str, int]) -> list[StreamEvent]:
        """Open a reasoning part (summary or raw text) of the item at
        output_index if it is new, tagging it with the item's id."""
        full_key = (output_index, *key)
        if self._parts.known(full_key) is not None:
            return []
        return [ReasoningState(self._parts(full_key), item_id=self._reasoning_ids.get(output_index, ""),
                               summary=key[0] == "summary", provider_type=self._target.provider_type)]

    def _on_event(self, data: str) -> list[StreamEvent]:
        if data.strip() == "[DONE]":
            return []
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise UpstreamError("protocol_error", f"invalid JSON in stream: {exc}") from exc
        kind = event.get("type", "")
        output_index = int(event.get("output_index", -1))
        if kind == "error":
            raise openai_common.in_stream_error(event.get("error") or event, self._target)
        if kind == "response.failed":
            raise _failed(event.get("response") or {}, self._target)
        if kind in ("response.created", "response.in_progress"):
            self._response_id = (event.get("response") or {}).get("id")
        elif kind == "response.output_text.delta":
            key = (output_index, "content", int(event.get("content_index", 0)))
            return [TextDelta(event["delta"], self._parts(key))] if event.get("delta") else []
        elif kind == "response.refusal.delta":
            key = (output_index, "content", int(event.get("content_index", 0)))
            return [RefusalDelta(event["delta"], self._parts(key))] if event.get("delta") else []
        elif kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_text.delta"):
            events = self._reasoning_part(output_index, ("summary", int(event.get("summary_index", 0))))
            if event.get("delta"):
                key = (output_index, "summary", int(event.get("summary_index", 0)))
                self._texted.add(key)
                events.append(ReasoningDelta(event["delta"], self._parts(key)))
            return events
        elif kind == "response.reasoning_text.delta":
            events = self._reasoning_part(output_index, ("text", int(event.get("content_index", 0))))
            if event.get("delta"):
                key = (output_index, "text", int(event.get("content_index", 0)))
                self._texted.add(key)
                events.append(ReasoningDelta(event["delta"], self._parts(key)))
            return events
        elif kind == "response.output_item.added":
            return self._on_item_added(output_index, event.get("item") or {})
        elif kind == "response.function_call_arguments.delta":
            known = self._calls.get(output_index)
            if known is not None and event.get("delta"):
                self._args_seen.add(known)
                return [ToolCallDelta(known, None, None, event["delta"], self._parts((output_index,)))]
        elif kind == "response.output_item.done":
            return self._on_item_done(output_index, event.get("item") or {})
        elif kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            self._done = [
                UsageEvent(normalise_usage(response.get("usage") or {})),
                Finish(_finish(response, bool(self._calls)), response.get("id") or self._response_id),
            ]
        return []

    def _on_item_added(self, output_index: int, item: Mapping[str, Any]) -> list[StreamEvent]:
        if item.get("type") == "function_call":
            new = len(self._calls)
            self._calls[output_index] = new
            item_id = str(item.get("id") or "")
            return [ToolCallDelta(new, item.get("call_id"), item.get("name"), "", self._parts((output_index,)),
                                  item_id=item_id, provider_type=self._target.provider_type if item_id else "")]
        if item.get("type") == "reasoning":
            self._reasoning_ids[output_index] = str(item.get("id") or "")
            return self._reasoning_part(output_index, ("summary", 0))
        return []

    def _on_item_done(self, output_index: int, item: Mapping[str, Any]) -> list[StreamEvent]:
        if item.get("type") == "reasoning":
            # The finished item carries the complete encrypted content (the
            # one in output_item.added may be partial); it belongs to the
            # item's first part, as in parse_response.
            events = self._reasoning_part(output_index, ("summary", 0))
            # Texts a server sent only in the finished item (no deltas).
            for kind, entries in (("summary", item.get("summary")), ("text", item.get("content"))):
                for n, entry in enumerate(entries or []):
                    text = entry.get("text") if isinstance(entry, Mapping) else None
                    if text and (output_index, kind, n) not in self._texted:
                        events += self._reasoning_part(output_index, (kind, n))
                        events.append(ReasoningDelta(text, self._parts((output_index, kind, n))))
            if item.get("encrypted_content"):
                events.append(ReasoningState(self._parts((output_index, "summary", 0)),
                                             encrypted_content=str(item["encrypted_content"])))
            return events
        # Some servers send a call's arguments only in the finished item.
        done = self._calls.get(output_index)
        if done is not None and done not in self._args_seen and item.get("arguments"):
            self._args_seen.add(done)
            return [ToolCallDelta(done, None, None, item["arguments"], self._parts((output_index,)))]
        return []
