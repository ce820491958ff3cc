"""Chat messages between the proto and the upstream engine's plain data.

Inbound: validate a ChatRequest's conversation and tools (INVALID_ARGUMENT
naming the field) and build the UpstreamTarget from the resolved domain
provider and model. Outbound: ChatResult and stream events as proto
messages, with cost and context usage from the model's prices and limits.
Pure: no I/O, no gRPC context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.protobuf import json_format

from modelplane_server.domain.types import BEDROCK_BEARER_DEFAULT_REGION, Model, Provider, ProviderType
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.validation import effective_base_url
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane_server.resolver_svc import chat_parts
from modelplane_server.resolver_svc import upstream as up
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

# Model oneof field (modelplane_server.domain.types.ProviderOptions.family) -> the ModelOptions
# group and dataclass the engine reads. openrouter and vercel share the
# gateway group: same `reasoning` object on the wire.
_OPTION_GROUPS: Final[Mapping[str, tuple[str, type[Any]]]] = {
    "anthropic": ("anthropic", up.AnthropicOptions),
    "openai": ("openai", up.OpenAIOptions),
    "google": ("google", up.GoogleOptions),
    "openrouter": ("gateway", up.GatewayReasoningOptions),
    "vercel": ("gateway", up.GatewayReasoningOptions),
}


# --------------------------------------------------------------------------- inbound


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
        params = _plain(json_format.MessageToDict(t.parameters)) if t.HasField("parameters") else {}
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


def model_options(model: Model) -> up.ModelOptions:
    """The model's general options plus its provider-specific group.
    Unset stays None, so the engine sends nothing for it."""
    o = model.options
    groups: dict[str, Any] = {}
    po = model.provider_options
    if po is not None and po.family in _OPTION_GROUPS:
        group, cls = _OPTION_GROUPS[po.family]
        groups[group] = cls(**{k: v for k, v in po.values.items() if k in cls.__dataclass_fields__})
    return up.ModelOptions(
        max_output_tokens=o.max_output_tokens,
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        **groups,
    )


def upstream_target(provider: Provider, api_key: str | None, env_region: str | None,
                    model: Model | None = None) -> up.UpstreamTarget:
    """Where and as whom to send: the provider's effective URL, the chosen
    key (None: no key, or SigV4 from the ambient chain for bedrock).

    Bedrock region: the provider's own, else the environment's; a bearer
    token may fall back to us-east-1, SigV4 may not (DESIGN.md), so the
    engine refuses a keyless target without one. Without a model (the
    probe) there is no identifier and no options.
    """
    region: str | None = None
    if provider.type is ProviderType.BEDROCK:
        region = provider.region or env_region or (BEDROCK_BEARER_DEFAULT_REGION if api_key else None)
    return up.UpstreamTarget(
        provider_type=provider.type.value,
        base_url=effective_base_url(provider, env_region),
        api_key=api_key,
        region=region,
        model_identifier=model.model_identifier if model else "",
        options=model_options(model) if model else up.ModelOptions(),
    )


# --------------------------------------------------------------------------- outbound


def prices(model: Model) -> up.Prices:
    p = model.pricing
    return up.Prices(p.input_per_mtok, p.output_per_mtok, p.cache_read_per_mtok, p.cache_write_per_mtok)


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


def chat_response(result: up.ChatResult, model: Model, resolution: rs.ResolvedModel) -> rs.ChatResponse:
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
    cost = up.cost_usd(result.usage, prices(model))
    if cost is not None:  # proto3 optional: absent means unpriced, never 0
        out.cost_usd = cost
    return out


def chat_finish(finish: up.Finish, usage: up.Usage | None, model: Model) -> rs.ChatFinish:
    """The last stream event. Without a usage report there is nothing to
    price or measure, so cost stays absent and the context ratio 0."""
    out = rs.ChatFinish(finish_reason=FINISH_REASONS[finish.finish_reason],
                        context_usage=context_usage_pb(usage or up.Usage(), model),
                        upstream_request_id=finish.upstream_request_id or "")
    cost = None if usage is None else up.cost_usd(usage, prices(model))
    if cost is not None:
        out.cost_usd = cost
    return out


def stream_event(event: up.StreamEvent) -> rs.ChatEvent:
    """A delta event 1:1 (Finish is built by chat_finish, which needs usage)."""
    part_event = chat_parts.part_event_pb(event)
    if part_event is not None:
        return part_event
    if isinstance(event, up.UsageEvent):
        return rs.ChatEvent(usage=usage_pb(event.usage))
    raise TypeError(f"not a delta event: {type(event).__name__}")


def configured_identifiers(models: Sequence[Model], provider: str) -> list[str]:
    """Model identifiers of the provider's enabled models, sorted, unique."""
    return sorted({m.model_identifier for m in models if m.provider == provider and m.enabled})
