"""Reasoning state on Chat Completions: what each endpoint behind it
returns with a reply and wants back in the next request (docs/upstream.md
"Reasoning state"). Gemini signs tool calls (extra_content.google), OpenRouter
and Vercel carry reasoning_details, DeepSeek-style servers want
reasoning_content within a tool loop, OpenAI takes refusals back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane_server.resolver_svc.upstream.openai_common import OPENAI_FAMILY
from modelplane_server.resolver_svc.upstream.parts import call_for_replay, current_turn_start, own_reasoning, texts
from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
    Part,
    ReasoningPart,
    RefusalPart,
    TextPart,
    ToolCall,
    ToolResult,
)

GATEWAYS: Final = ("openrouter", "vercel-ai-gateway")
# Gemini's documented value for a function call it did not sign (histories
# from other models, injected calls); Vertex documents only this one of the two.
GEMINI_SKIP_SIGNATURE: Final = "skip_thought_signature_validator"


def wire_messages(messages: Sequence[ChatMessage], provider_type: str) -> list[dict[str, Any]]:
    current = current_turn_start(messages)
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role == "assistant":
            out.append(_assistant(msg.content_parts(), provider_type, in_current_turn=i >= current))
            continue
        results = [p for p in msg.content_parts() if isinstance(p, ToolResult)]
        for result in results:
            out.append({"role": "tool", "tool_call_id": result.tool_call_id, "content": result.text})
        if msg.role != "tool":
            out.append({"role": msg.role, "content": "".join(texts(msg))})
    return out


def _assistant(parts: Sequence[Part], provider_type: str, *, in_current_turn: bool) -> dict[str, Any]:
    """An assistant turn with the reasoning state each endpoint documents
    (docs/upstream.md "Reasoning state")."""
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    calls = [call_for_replay(p, provider_type) for p in parts if isinstance(p, ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": (text or None) if calls else text}
    reasoning = own_reasoning(parts, provider_type)
    if provider_type in GATEWAYS:
        details = [_detail(p, i) for i, p in enumerate(p for p in reasoning if p.format)]
        if details:
            message["reasoning_details"] = details
    elif provider_type == "openai-compatible" and in_current_turn:
        # DeepSeek-style servers want the reasoning of the tool loop in
        # progress back (and ignore or refuse it for finished turns).
        thought = "".join(p.text for p in reasoning)
        if thought:
            message["reasoning_content"] = thought
    elif provider_type in OPENAI_FAMILY:
        refusal = "".join(p.text for p in parts if isinstance(p, RefusalPart))
        if refusal:
            message["refusal"] = refusal
    if calls:
        if provider_type == "google" and not calls[0].signature:
            # Gemini validates the first call of each step; a call it did not
            # sign (another model's, or a legacy replay) gets the documented bypass.
            calls[0] = dataclasses.replace(calls[0], signature=GEMINI_SKIP_SIGNATURE)
        message["tool_calls"] = [_wire_call(call) for call in calls]
    return message


def _wire_call(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }
    if call.signature:
        out["extra_content"] = {"google": {"thought_signature": call.signature}}
    return out


def _detail(part: ReasoningPart, index: int) -> dict[str, Any]:
    """A reasoning part back as the reasoning_details entry it came from."""
    detail: dict[str, Any]
    if part.redacted_data:
        detail = {"type": "reasoning.encrypted", "data": part.redacted_data}
    elif part.summary:
        detail = {"type": "reasoning.summary", "summary": part.text}
    else:
        detail = {"type": "reasoning.text", "text": part.text}
        if part.signature:
            detail["signature"] = part.signature
    if part.item_id:
        detail["id"] = part.item_id
    detail["format"] = part.format
    detail["index"] = index
    return detail


def detail_part(detail: Mapping[str, Any], provider_type: str) -> ReasoningPart | None:
    kind = detail.get("type")
    base = ReasoningPart(item_id=str(detail.get("id") or ""), format=str(detail.get("format") or ""),
                         provider_type=provider_type)
    if kind == "reasoning.text":
        return dataclasses.replace(base, text=str(detail.get("text") or ""),
                                   signature=str(detail.get("signature") or ""))
    if kind == "reasoning.summary":
        return dataclasses.replace(base, text=str(detail.get("summary") or ""), summary=True)
    if kind == "reasoning.encrypted":
        return dataclasses.replace(base, redacted_data=str(detail.get("data") or ""))
    return None


def call_signature(call: Mapping[str, Any]) -> str:
    value = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    return value if isinstance(value, str) else ""
