"""Amazon Bedrock Converse / ConverseStream (rest-json + binary event stream).

Auth: a stored key is a Bedrock API key sent as `Authorization: Bearer`;
without one the client signs with SigV4 (signing name "bedrock") using the
standard AWS credential chain. Field names follow botocore's
bedrock-runtime 2023-09-30 service model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from modelplane_server.resolver_svc.upstream import claude
from modelplane_server.resolver_svc.upstream.errors import (
    ErrorKind,
    UpstreamError,
    kind_for_status,
    looks_like_context_too_long,
)
from modelplane_server.resolver_svc.upstream.eventstream import EventMessage, EventStreamDecoder
from modelplane_server.resolver_svc.upstream.openai_common import int_field
from modelplane_server.resolver_svc.upstream.protocol import (
    alternating_turns,
    MappingContext,
    OptionRule,
    WireRequest,
    apply_rules,
    join_url,
    json_body,
    loads_object,
)
from modelplane_server.resolver_svc.upstream.parts import PartIndexer, own, texts
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    ChatResult,
    Finish,
    FinishReason,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ReasoningState,
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

SIGNING_NAME: Final = "bedrock"
PROVIDER_TYPE: Final = "bedrock"

# Converse has no penalties: left out. top_k and thinking are model-native
# (Anthropic) fields, so they travel in additionalModelRequestFields.
RULES: Final[tuple[OptionRule, ...]] = (
    OptionRule("max_output_tokens", "inferenceConfig.maxTokens"),
    OptionRule("temperature", "inferenceConfig.temperature", claude.sampling_allowed),
    OptionRule("top_p", "inferenceConfig.topP", claude.sampling_allowed),
    OptionRule("top_k", "additionalModelRequestFields.top_k", claude.sampling_allowed),
    *(OptionRule(option, wire, condition)
      for option, wire, condition in claude.thinking_rules("additionalModelRequestFields.")),
    OptionRule("anthropic.effort", "outputConfig.effort"),
)

_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Exception names (lower-cased: event-stream exceptions arrive camelCased).
_ERRORS: Final[dict[str, tuple[ErrorKind, bool | None]]] = {
    "throttlingexception": ("rate_limited", True),
    "servicequotaexceededexception": ("insufficient_quota", False),
    "serviceunavailableexception": ("unavailable", True),
    "modelnotreadyexception": ("unavailable", True),
    "internalserverexception": ("unavailable", True),
    "modeltimeoutexception": ("timeout", True),
    "modelstreamerrorexception": ("unavailable", False),
    "modelerrorexception": ("unavailable", False),
    "validationexception": ("bad_request", False),
    "accessdeniedexception": ("auth_failed", False),
    "unrecognizedclientexception": ("auth_failed", False),
    "invalidsignatureexception": ("auth_failed", False),
    "expiredtokenexception": ("auth_failed", False),
    "resourcenotfoundexception": ("model_not_found", False),
}


# Bedrock refuses a model whose Marketplace subscription cannot be billed
# with AccessDeniedException "Model access is denied due to
# INVALID_PAYMENT_INSTRUMENT: ...": a billing refusal, not an auth failure.
_BILLING_HINTS: Final = ("INVALID_PAYMENT_INSTRUMENT",)


def error_from(
    exception_type: str | None, message: str, status: int | None, secret: str | None
) -> UpstreamError:
    name = (exception_type or "").split(":")[0].split("#")[-1]
    kind, should_retry = _ERRORS.get(name.lower(), (None, None))
    if kind is None:
        kind = kind_for_status(status or 502, name, message)
    if any(hint in message for hint in _BILLING_HINTS):
        kind, should_retry = "insufficient_quota", False
    elif kind == "bad_request" and looks_like_context_too_long(message):
        kind = "context_too_long"
    return UpstreamError(
        kind,
        message,
        http_status=status,
        provider_code=name or None,
        should_retry=should_retry,
        secrets=(secret,),
    )


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    # inputTokens excludes cache reads/writes, as on Anthropic's own API;
    # thinking is inside outputTokens and not reported apart.
    return Usage(
        input_tokens=int_field(usage, "inputTokens"),
        cache_read_tokens=int_field(usage, "cacheReadInputTokens"),
        cache_write_tokens=_cache_writes(usage),
        output_tokens=int_field(usage, "outputTokens"),
        reasoning_tokens=0,
    )


def _cache_writes(usage: Mapping[str, Any]) -> int:
    # cacheDetails splits the writes by TTL; its sum is the total when the
    # flat counter is missing.
    if usage.get("cacheWriteInputTokens") is not None:
        return int_field(usage, "cacheWriteInputTokens")
    details = usage.get("cacheDetails")
    return sum(int_field(d, "inputTokens") for d in details if isinstance(d, Mapping)) if isinstance(
        details, list) else 0


def _is_thinking(block: Mapping[str, Any]) -> bool:
    return "reasoningContent" in block


def _is_tool_result(block: Mapping[str, Any]) -> bool:
    return "toolResult" in block


def _reasoning_block(part: ReasoningPart) -> dict[str, Any] | None:
    if not own(PROVIDER_TYPE, part.provider_type):
        return None
    if part.redacted_data:
        return {"reasoningContent": {"redactedContent": part.redacted_data}}
    if part.signature:
        return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": part.signature}}}
    return None  # readable text without a signature cannot be replayed


def _block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None  # blank text blocks are a ValidationException
    if isinstance(part, ReasoningPart):
        return _reasoning_block(part)
    if isinstance(part, ToolCall):
        return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": claude.tool_input(part.arguments_json)}}
    if isinstance(part, ToolResult):
        result: dict[str, Any] = {"toolUseId": part.tool_call_id, "content": [{"text": part.text}]}
        if part.is_error:
            result["status"] = "error"
        return {"toolResult": result}
    return None  # refusals are not replayed


def _content(msg: ChatMessage) -> list[dict[str, Any]]:
    return [b for b in (_block(p) for p in msg.content_parts()) if b is not None]


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return alternating_turns(messages, _content)


def control_plane_base(base_url: str) -> str:
    """ListFoundationModels lives on bedrock.{region}, not bedrock-runtime.{region}.
    Any other base URL (VPC endpoint, proxy, test fake) is used as given."""
    parts = urlsplit(base_url)
    host = parts.netloc
    for runtime, control in (("bedrock-runtime-fips.", "bedrock-fips."), ("bedrock-runtime.", "bedrock.")):
        if host.startswith(runtime):
            host = control + host[len(runtime) :]
            return urlunsplit((parts.scheme, host, "", "", ""))
    return base_url


class BedrockConverseProtocol:
    name = "bedrock_converse"

    def build_request(
        self,
        target: UpstreamTarget,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolDefinition],
        *,
        stream: bool,
    ) -> WireRequest:
        wire_messages = _messages(messages)
        wire_messages, flags = claude.replayable(wire_messages, target.options.anthropic.thinking_on,
                                                 _is_tool_result, _is_thinking)
        body: dict[str, Any] = {"messages": wire_messages}
        system = [{"text": t} for m in messages if m.role == "system" for t in texts(m) if t]
        if system:
            body["system"] = system
        if tools:
            body["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t.name,
                            "description": t.description,
                            "inputSchema": {"json": t.parameters},
                        }
                    }
                    for t in tools
                ]
            }
        apply_rules(body, MappingContext(target, bool(tools), flags), RULES)
        operation = "converse-stream" if stream else "converse"
        url = join_url(target.base_url, "model", quote(target.model_identifier, safe=""), operation)
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        return self._authorised(
            "POST", url, {"Content-Type": "application/json", "Accept": accept}, json_body(body), target
        )

    def _authorised(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, target: UpstreamTarget
    ) -> WireRequest:
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
            return WireRequest(method, url, headers, body)
        if not target.region:
            raise UpstreamError(
                "bad_request", "bedrock without a key needs a region for SigV4", should_retry=False
            )
        return WireRequest(method, url, headers, body, sigv4=(SIGNING_NAME, target.region))

    def parse_response(self, body: bytes, request_id: str | None, target: UpstreamTarget) -> ChatResult:
        data = loads_object(body)
        parts: list[Part] = []
        for block in ((data.get("output") or {}).get("message") or {}).get("content") or []:
            if block.get("text"):
                parts.append(TextPart(block["text"]))
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"] or {}
                if "redactedContent" in reasoning:
                    parts.append(ReasoningPart(redacted_data=reasoning["redactedContent"] or "",
                                               provider_type=PROVIDER_TYPE))
                else:
                    text = reasoning.get("reasoningText") or {}
                    parts.append(ReasoningPart(text=text.get("text") or "", signature=text.get("signature") or "",
                                               provider_type=PROVIDER_TYPE))
            elif "toolUse" in block:
                use = block["toolUse"] or {}
                parts.append(ToolCall(str(use.get("toolUseId")), str(use.get("name")),
                                      json.dumps(use.get("input") or {})))
        return ChatResult.of(parts, _FINISH.get(data.get("stopReason") or "", "other"),
                             normalise_usage(data.get("usage") or {}), request_id)

    def stream_parser(self, target: UpstreamTarget) -> ConverseStreamParser:
        return ConverseStreamParser(target)

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: UpstreamTarget
    ) -> UpstreamError:
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        exception_type = headers.get("x-amzn-errortype") or data.get("__type") or data.get("code")
        message = str(data.get("message") or data.get("Message") or body.decode("utf-8", "replace"))
        return error_from(exception_type, message, status, target.api_key)

    def models_request(self, target: UpstreamTarget) -> WireRequest:
        url = join_url(control_plane_base(target.base_url), "foundation-models")
        return self._authorised("GET", url, {"Accept": "application/json"}, None, target)

    def parse_models(self, body: bytes) -> list[str]:
        summaries = loads_object(body).get("modelSummaries") or []
        return [str(m["modelId"]) for m in summaries if isinstance(m, dict) and "modelId" in m]


class ConverseStreamParser:
    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self._decoder = EventStreamDecoder()
        self._tool_blocks: dict[int, int] = {}
        self._parts = PartIndexer()  # contentBlockIndex -> part index
        self._stop_reason: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for message in self._decoder.feed(chunk):
            events.extend(self._on_message(message))
        return events

    def finish(self) -> list[StreamEvent]:
        if self._stop_reason is None:
            raise UpstreamError("unavailable", "stream ended before messageStop")
        events: list[StreamEvent] = []
        if self._usage is not None:
            events.append(UsageEvent(self._usage))
        events.append(Finish(_FINISH.get(self._stop_reason, "other"), None))
        return events

    def _on_message(self, message: EventMessage) -> list[StreamEvent]:
        try:
            payload = json.loads(message.payload or b"{}")
        except ValueError as exc:
            raise UpstreamError("protocol_error", f"invalid JSON in event: {exc}") from exc
        if message.message_type in ("exception", "error"):
            text = str(
                payload.get("message")
                or payload.get("Message")
                or message.headers.get(":error-message")
                or ""
            )
            name = message.headers.get(":exception-type") or message.headers.get(":error-code")
            raise error_from(name, text, None, self._target.api_key)
        kind = message.event_type
        if kind == "contentBlockStart":
            use = (payload.get("start") or {}).get("toolUse")
            if use:
                index = int(payload.get("contentBlockIndex", 0))
                ordinal = len(self._tool_blocks)
                self._tool_blocks[index] = ordinal
                return [ToolCallDelta(ordinal, use.get("toolUseId"), use.get("name"), "", self._parts(index))]
        elif kind == "contentBlockDelta":
            return self._on_delta(int(payload.get("contentBlockIndex", 0)), payload.get("delta") or {})
        elif kind == "messageStop":
            self._stop_reason = payload.get("stopReason") or "end_turn"
        elif kind == "metadata":
            self._usage = normalise_usage(payload.get("usage") or {})
        return []

    def _on_delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        if delta.get("text"):
            return [TextDelta(delta["text"], self._parts(index))]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, Mapping):
            return self._on_reasoning(index, reasoning)
        use = delta.get("toolUse") or {}
        if use.get("input") and index in self._tool_blocks:
            return [ToolCallDelta(self._tool_blocks[index], None, None, use["input"], self._parts(index))]
        return []

    def _on_reasoning(self, index: int, reasoning: Mapping[str, Any]) -> list[StreamEvent]:
        """Reasoning blocks have no start event: the first delta opens the
        part (tagged with the provider type); text pieces, then the
        signature, or the redacted blob whole."""
        events: list[StreamEvent] = []
        if self._parts.known(index) is None:
            events.append(ReasoningState(self._parts(index), provider_type=PROVIDER_TYPE))
        part = self._parts(index)
        if reasoning.get("text"):
            events.append(ReasoningDelta(reasoning["text"], part))
        if reasoning.get("signature"):
            events.append(ReasoningState(part, signature_delta=reasoning["signature"]))
        if reasoning.get("redactedContent"):
            events.append(ReasoningState(part, redacted_data=reasoning["redactedContent"]))
        return events
