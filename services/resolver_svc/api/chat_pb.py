"""Chat, StreamChat and ProbeProvider messages between the proto and the
chat gateway's plain data.

Inbound: validate a ChatRequest's conversation and tools (INVALID_ARGUMENT
naming the field) into a ChatInput. Outbound: the gateway's reply, stream
events and probe result as proto messages, with context usage from the
model's limits. Pure: no I/O, no gRPC context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.protobuf import json_format

from modelplane_server import convert
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.types import Model
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.api import chat_parts
from modelplane_server.resolver_svc import upstream as up
from modelplane_server.resolver_svc.chat.gateway import ChatInput, ChatReply, ProbeResult, StreamEnd
from modelplane_server.resolver_svc.upstream.types import Role

ROLES: Final[Mapping[int, Role]] = {
    rs.CHAT_ROLE_SYSTEM: "system",
    rs.CHAT_ROLE_USER: "user",
    rs.CHAT_ROLE_ASSISTANT: "assistant",
    rs.CHAT_ROLE_TOOL: "tool",
}

FINISH_REASONS: Final[Mapping[up.FinishReason, Any]] = {
    "stop": rs.FINISH_REASON_STOP,
    "length": rs.FINISH_REASON_LENGTH,
    "tool_calls": rs.FINISH_REASON_TOOL_CALLS,
    "content_filter": rs.FINISH_REASON_CONTENT_FILTER,
    "refusal": rs.FINISH_REASON_REFUSAL,
    "other": rs.FINISH_REASON_OTHER,
}

# Anthropic and Converse require an object schema; a tool without parameters
# is "takes no arguments", which this says on every protocol.
NO_PARAMETERS: Final[Mapping[str, object]] = {"type": "object", "properties": {}}


# --------------------------------------------------------------------------- inbound


def chat_input(request: rs.ChatRequest) -> ChatInput:
    """The request as the gateway takes it. Bad input fails here, before
    any lookup: the conversation first, then the context."""
    messages, tools = conversation(request)
    context = convert.context(request.context or pb.OVERRIDE_CONTEXT_ROOT, "context")
    return ChatInput(user=request.user, context=context, chat_model=request.chat_model or None,
                     chat_id=request.chat_id, messages=messages, tools=tools)


def conversation(request: rs.ChatRequest) -> tuple[list[up.ChatMessage], list[up.ToolDefinition]]:
    """The request's messages and tools as engine data; every problem at
    once as one InvalidArgument with a field violation each."""
    problems: list[FieldViolation] = []
    if not request.messages:
        problems.append(FieldViolation("messages", "is required: at least one message"))
    messages = [_message(m, f"messages[{i}]", problems) for i, m in enumerate(request.messages)]
    tools: list[up.ToolDefinition] = []
    seen: set[str] = set()
    for i, t in enumerate(request.tools):
        field = f"tools[{i}]"
        chat_parts.check_tool_name(t.name, f"{field}.name", problems)
        if t.name in seen:
            problems.append(FieldViolation(f"{field}.name", f"duplicates tool {t.name!r}"))
        seen.add(t.name)
        params = _schema(t, f"{field}.parameters", problems)
        tools.append(up.ToolDefinition(t.name, t.description, dict(params or NO_PARAMETERS)))
    if problems:
        raise InvalidArgument(problems)
    return messages, tools


def _message(m: rs.ChatMessage, field: str, problems: list[FieldViolation]) -> up.ChatMessage:
    role = ROLES.get(m.role)
    if role is None:
        problems.append(FieldViolation(f"{field}.role", "is required: system, user, assistant or tool"))
        role = "user"
    if m.parts:
        return chat_parts.message_from_parts(m, role, field, problems)
    if role == "tool" and not m.tool_call_id:
        problems.append(FieldViolation(f"{field}.tool_call_id", "is required on a tool message"))
    if m.tool_calls and role != "assistant":
        problems.append(FieldViolation(f"{field}.tool_calls", "only assistant messages carry tool calls"))
    calls = [chat_parts.tool_call_from_pb(c, f"{field}.tool_calls[{j}]", problems)
             for j, c in enumerate(m.tool_calls)]
    return up.ChatMessage(role, m.text, tuple(calls), m.tool_call_id or None)


def _schema(tool: rs.ToolDefinition, field: str, problems: list[FieldViolation]) -> Any:
    """The tool's parameters as JSON; NaN and infinities have no JSON form."""
    if not tool.HasField("parameters"):
        return {}
    try:
        return _plain(json_format.MessageToDict(tool.parameters))
    except ValueError:
        problems.append(FieldViolation(field, "must be a JSON schema: numbers must be finite (no NaN or infinity)"))
        return {}


def _plain(value: Any) -> Any:
    """Struct numbers arrive as doubles; JSON schema keywords such as
    minItems must stay integers, and 3.0 == 3 in JSON schema anyway."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- outbound


def usage_pb(u: up.Usage) -> rs.Usage:
    return rs.Usage(input_tokens=u.input_tokens, cache_read_tokens=u.cache_read_tokens,
                    cache_write_tokens=u.cache_write_tokens, output_tokens=u.output_tokens,
                    reasoning_tokens=u.reasoning_tokens)


def context_usage_pb(u: up.Usage, model: Model) -> rs.ContextUsage:
    threshold = model.compression_threshold
    ratio, due = up.context_usage(u, model.context_limit, threshold)
    return rs.ContextUsage(ratio=ratio, compaction_due=due, threshold=threshold / 100)


def tool_call_pb(c: up.ToolCall) -> rs.ToolCall:
    return chat_parts.tool_call_pb(c)


def chat_response(reply: ChatReply, model: Model, resolution: rs.ResolvedModel) -> rs.ChatResponse:
    result = reply.result
    out = rs.ChatResponse(
        text=result.text,
        reasoning=result.reasoning,
        tool_calls=[tool_call_pb(c) for c in result.tool_calls],
        finish_reason=FINISH_REASONS[result.finish_reason],
        usage=usage_pb(result.usage),
        context_usage=context_usage_pb(result.usage, model),
        upstream_request_id=result.upstream_request_id or "",
        resolution=resolution,
        parts=chat_parts.parts_pb(result.parts),
        refusal=result.refusal,
    )
    if reply.cost_usd is not None:  # proto3 optional: absent means unpriced, never 0
        out.cost_usd = reply.cost_usd
    return out


def chat_finish(end: StreamEnd, model: Model) -> rs.ChatFinish:
    """The last stream event. Without a usage report there is nothing to
    measure, so the context ratio is 0 (and the gateway left cost absent)."""
    out = rs.ChatFinish(finish_reason=FINISH_REASONS[end.finish.finish_reason],
                        context_usage=context_usage_pb(end.usage or up.Usage(), model),
                        upstream_request_id=end.finish.upstream_request_id or "")
    if end.cost_usd is not None:
        out.cost_usd = end.cost_usd
    return out


def stream_event(event: up.StreamEvent | StreamEnd, model: Model) -> rs.ChatEvent:
    """A delta event 1:1 (parts carry their part_index); the stream's end as its finish."""
    if isinstance(event, StreamEnd):
        return rs.ChatEvent(finish=chat_finish(event, model))
    part_event = chat_parts.part_event_pb(event)
    if part_event is not None:
        return part_event
    if isinstance(event, up.UsageEvent):
        return rs.ChatEvent(usage=usage_pb(event.usage))
    raise TypeError(f"not a delta event: {type(event).__name__}")


# Deltas whose pieces concatenate: several in a row for one part mean the
# same as one holding their text joined (the proto's fold, part by part).
JOINABLE: Final = (up.TextDelta, up.ReasoningDelta, up.RefusalDelta)


def stream_events(events: Sequence[up.StreamEvent | StreamEnd], model: Model) -> list[rs.ChatEvent]:
    """Events that were waiting together, as few ChatEvents as mean the same:
    a run of text, reasoning or refusal deltas of one part becomes one delta
    with their text joined; nothing else is merged or moved."""
    out: list[rs.ChatEvent] = []
    run: list[str] = []
    for i, event in enumerate(events):
        if isinstance(event, JOINABLE):
            run.append(event.text)
            after = events[i + 1] if i + 1 < len(events) else None
            if type(after) is type(event) and after.part_index == event.part_index:
                continue
            joined, run = "".join(run), []
            out.append(stream_event(type(event)(joined, event.part_index), model))
        else:
            out.append(stream_event(event, model))
    return out


def probe_response(r: ProbeResult) -> rs.ProbeProviderResponse:
    return rs.ProbeProviderResponse(reachable=r.reachable, authenticated=r.authenticated, error=r.error,
                                    upstream_models=r.upstream_models,
                                    configured_models_missing=r.configured_models_missing,
                                    latency_ms=r.latency_ms)
