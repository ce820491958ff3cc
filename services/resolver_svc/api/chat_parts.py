"""Chat parts between the proto and the upstream engine's plain data.

Inbound: a ChatMessage's parts (or its legacy tool calls) as engine parts,
every problem a field violation. Outbound: the engine's parts, stream part
events and tool calls as proto messages. Pure: no I/O, no gRPC context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server import convert
from modelplane_server.domain import bounds
from modelplane_server.domain.errors import FieldViolation
from modelplane_server.domain.types import ProviderType
from modelplane_server.resolver_svc import upstream as up
from modelplane_server.resolver_svc.upstream.types import Role

# Matched with fullmatch: "$" would also accept a trailing newline.
TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# A tool call's arguments are a model's output echoed back, not a document;
# the bound keeps json.loads cheap, and its nesting limit (RecursionError)
# is answered as bad input, not a crash.
MAX_ARGUMENTS_JSON_CHARS: Final = bounds.TOOL_ARGUMENTS
# Opaque reasoning state is a provider's blob echoed back: signatures are a
# few KB, encrypted reasoning tens of KB; the bound is generous on purpose.
MAX_OPAQUE_CHARS: Final = bounds.OPAQUE_STATE
MAX_ITEM_ID_CHARS: Final = bounds.ITEM_ID
MAX_FORMAT_CHARS: Final = 64
MAX_PARTS: Final = 10_000

# Which part kinds each role's message may hold.
ALLOWED_PARTS: Final[Mapping[Role, frozenset[str]]] = {
    "system": frozenset({"text"}),
    "user": frozenset({"text"}),
    "assistant": frozenset({"text", "reasoning", "tool_call", "refusal"}),
    "tool": frozenset({"tool_result"}),
}


def _provider_type_from_pb(value: int) -> str:
    """The engine's name of a proto ProviderType; "" when unset or unknown
    (such state is nobody's, so it is dropped on replay)."""
    known = convert.PROVIDER_TYPES.get(pb.ProviderType.ValueType(value))
    return known.value if known is not None else ""


def _provider_type_pb(name: str) -> Any:
    return convert.PROVIDER_TYPE_TO_PB[ProviderType(name)] if name else 0


# --------------------------------------------------------------------------- inbound


def check_tool_name(name: str, field: str, problems: list[FieldViolation]) -> None:
    if not TOOL_NAME.fullmatch(name):
        problems.append(FieldViolation(field, "must match [a-zA-Z0-9_-]{1,64}"))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return False


def tool_call_from_pb(c: rs.ToolCall, where: str, problems: list[FieldViolation]) -> up.ToolCall:
    """A tool call (legacy tool_calls or a tool_call part), its opaque state included."""
    if not c.id:
        problems.append(FieldViolation(f"{where}.id", "is required"))
    check_tool_name(c.name, f"{where}.name", problems)
    arguments = c.arguments_json or "{}"
    if len(arguments) > MAX_ARGUMENTS_JSON_CHARS:
        problems.append(FieldViolation(f"{where}.arguments_json",
                                       f"must be at most {MAX_ARGUMENTS_JSON_CHARS} characters"))
    elif not _is_json_object(arguments):
        problems.append(FieldViolation(f"{where}.arguments_json", "must be a JSON object"))
    if len(c.signature) > MAX_OPAQUE_CHARS:
        problems.append(FieldViolation(f"{where}.signature", f"must be at most {MAX_OPAQUE_CHARS} characters"))
    if len(c.item_id) > MAX_ITEM_ID_CHARS:
        problems.append(FieldViolation(f"{where}.item_id", f"must be at most {MAX_ITEM_ID_CHARS} characters"))
    return up.ToolCall(c.id, c.name, arguments, c.signature, c.item_id, _provider_type_from_pb(c.provider_type))


def _reasoning(r: rs.ReasoningPart, where: str, problems: list[FieldViolation]) -> up.ReasoningPart:
    for name in ("signature", "redacted_data", "encrypted_content"):
        if len(getattr(r, name)) > MAX_OPAQUE_CHARS:
            problems.append(FieldViolation(f"{where}.{name}", f"must be at most {MAX_OPAQUE_CHARS} characters"))
    if len(r.item_id) > MAX_ITEM_ID_CHARS:
        problems.append(FieldViolation(f"{where}.item_id", f"must be at most {MAX_ITEM_ID_CHARS} characters"))
    if len(r.format) > MAX_FORMAT_CHARS:
        problems.append(FieldViolation(f"{where}.format", f"must be at most {MAX_FORMAT_CHARS} characters"))
    return up.ReasoningPart(text=r.text, summary=r.summary, signature=r.signature, redacted_data=r.redacted_data,
                            encrypted_content=r.encrypted_content, item_id=r.item_id,
                            provider_type=_provider_type_from_pb(r.provider_type), format=r.format)


def message_from_parts(m: rs.ChatMessage, role: Role, field: str,
                       problems: list[FieldViolation]) -> up.ChatMessage:
    """A message that uses parts: the legacy fields must be empty, and each
    part must suit the role (ALLOWED_PARTS)."""
    for name, is_set in (("text", bool(m.text)), ("tool_calls", bool(m.tool_calls)),
                         ("tool_call_id", bool(m.tool_call_id))):
        if is_set:
            problems.append(FieldViolation(f"{field}.{name}", "must be empty when parts is set"))
    if len(m.parts) > MAX_PARTS:
        problems.append(FieldViolation(f"{field}.parts", f"must hold at most {MAX_PARTS} parts"))
    parts: list[up.Part] = []
    for j, p in enumerate(m.parts):
        where = f"{field}.parts[{j}]"
        kind = p.WhichOneof("part")
        if kind is None:
            problems.append(FieldViolation(where, "must set one of text, reasoning, tool_call, tool_result, refusal"))
            continue
        if kind not in ALLOWED_PARTS[role]:
            allowed = ", ".join(sorted(ALLOWED_PARTS[role]))
            problems.append(FieldViolation(f"{where}.{kind}", f"is not allowed in a {role} message ({allowed})"))
            continue
        if kind == "text":
            parts.append(up.TextPart(p.text))
        elif kind == "refusal":
            parts.append(up.RefusalPart(p.refusal))
        elif kind == "reasoning":
            parts.append(_reasoning(p.reasoning, f"{where}.reasoning", problems))
        elif kind == "tool_call":
            parts.append(tool_call_from_pb(p.tool_call, f"{where}.tool_call", problems))
        else:
            if not p.tool_result.tool_call_id:
                problems.append(FieldViolation(f"{where}.tool_result.tool_call_id", "is required"))
            parts.append(up.ToolResult(p.tool_result.tool_call_id, p.tool_result.text, p.tool_result.is_error))
    return up.ChatMessage(role, parts=tuple(parts))


# --------------------------------------------------------------------------- outbound


def tool_call_pb(c: up.ToolCall) -> rs.ToolCall:
    return rs.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments_json, signature=c.signature,
                       item_id=c.item_id, provider_type=_provider_type_pb(c.provider_type))


def part_pb(part: up.Part) -> rs.ChatPart:
    if isinstance(part, up.TextPart):
        return rs.ChatPart(text=part.text)
    if isinstance(part, up.RefusalPart):
        return rs.ChatPart(refusal=part.text)
    if isinstance(part, up.ToolCall):
        return rs.ChatPart(tool_call=tool_call_pb(part))
    if isinstance(part, up.ToolResult):
        return rs.ChatPart(tool_result=rs.ToolResult(tool_call_id=part.tool_call_id, text=part.text,
                                                     is_error=part.is_error))
    return rs.ChatPart(reasoning=rs.ReasoningPart(
        text=part.text, summary=part.summary, signature=part.signature, redacted_data=part.redacted_data,
        encrypted_content=part.encrypted_content, item_id=part.item_id,
        provider_type=_provider_type_pb(part.provider_type), format=part.format))


def parts_pb(parts: Sequence[up.Part]) -> list[rs.ChatPart]:
    return [part_pb(p) for p in parts]


def part_event_pb(event: up.StreamEvent) -> rs.ChatEvent | None:
    """A part event 1:1, with its part_index; None for other events."""
    if isinstance(event, up.TextDelta):
        return rs.ChatEvent(text_delta=event.text, part_index=event.part_index)
    if isinstance(event, up.ReasoningDelta):
        return rs.ChatEvent(reasoning_delta=event.text, part_index=event.part_index)
    if isinstance(event, up.RefusalDelta):
        return rs.ChatEvent(refusal_delta=event.text, part_index=event.part_index)
    if isinstance(event, up.ReasoningState):
        return rs.ChatEvent(part_index=event.part_index, reasoning_state=rs.ReasoningState(
            signature_delta=event.signature_delta, redacted_data=event.redacted_data,
            encrypted_content=event.encrypted_content, item_id=event.item_id, summary=event.summary,
            provider_type=_provider_type_pb(event.provider_type), format=event.format))
    if isinstance(event, up.ToolCallDelta):
        return rs.ChatEvent(part_index=event.part_index, tool_call_delta=rs.ToolCallDelta(
            index=event.index, id=event.id or "", name=event.name or "", arguments_delta=event.arguments_delta,
            signature=event.signature, item_id=event.item_id, provider_type=_provider_type_pb(event.provider_type)))
    return None
