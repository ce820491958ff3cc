"""What a StreamChat caller does with the events, written from the proto's
documentation alone (not from the server's code): fold them by part_index
into the assistant turn's parts."""

from __future__ import annotations

from modelplane.v1 import resolver_service_pb2 as rs


def fold(events: list[rs.ChatEvent]) -> list[rs.ChatPart]:
    parts: dict[int, rs.ChatPart] = {}
    for event in events:
        kind = event.WhichOneof("event")
        if kind not in ("text_delta", "reasoning_delta", "tool_call_delta", "reasoning_state", "refusal_delta"):
            continue
        part = parts.setdefault(event.part_index, rs.ChatPart())
        if kind == "text_delta":
            part.text += event.text_delta
        elif kind == "refusal_delta":
            part.refusal += event.refusal_delta
        elif kind == "reasoning_delta":
            part.reasoning.SetInParent()
            part.reasoning.text += event.reasoning_delta
        elif kind == "reasoning_state":
            state, reasoning = event.reasoning_state, part.reasoning
            reasoning.SetInParent()
            reasoning.signature += state.signature_delta
            for name in ("redacted_data", "encrypted_content", "item_id", "format"):
                if getattr(state, name):
                    setattr(reasoning, name, getattr(state, name))
            if state.provider_type:
                reasoning.provider_type = state.provider_type
            if state.summary:
                reasoning.summary = True
        else:
            delta, call = event.tool_call_delta, part.tool_call
            call.SetInParent()
            call.arguments_json += delta.arguments_delta
            for name in ("id", "name", "signature", "item_id"):
                if getattr(delta, name):
                    setattr(call, name, getattr(delta, name))
            if delta.provider_type:
                call.provider_type = delta.provider_type
    assert sorted(parts) == list(range(len(parts))), f"part indexes are not dense: {sorted(parts)}"
    return [parts[i] for i in range(len(parts))]
