"""Assistant turns as ordered parts: folding stream events into parts, and
the replay rules every protocol shares (docs/upstream.md "Reasoning state").

A stream numbers the parts of the turn it produces (part_index, from 0, in
order of first appearance); PartFolder rebuilds them from the events, which
is exactly what a caller folding StreamChat events does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from modelplane_server.resolver_svc.upstream.types import (
    ChatMessage,
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
)


class PartIndexer:
    """part_index per wire key (a content block index, an output item, ...),
    allocated on first use, so a wire block that never yields an event
    takes no index (unary parsing skips the same empty blocks)."""

    def __init__(self) -> None:
        self._indexes: dict[Hashable, int] = {}

    def __call__(self, key: Hashable) -> int:
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = len(self._indexes)
        return index

    def known(self, key: Hashable) -> int | None:
        return self._indexes.get(key)


class PartFolder:
    """Folds part events by part_index into the parts of the turn."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, Any]] = {}
        self._kinds: dict[int, type] = {}

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self._append(event.part_index, TextPart, "text", event.text)
        elif isinstance(event, RefusalDelta):
            self._append(event.part_index, RefusalPart, "text", event.text)
        elif isinstance(event, ReasoningDelta):
            self._append(event.part_index, ReasoningPart, "text", event.text)
        elif isinstance(event, ReasoningState):
            fields = self._part(event.part_index, ReasoningPart)
            fields["signature"] = fields.get("signature", "") + event.signature_delta
            for name in ("redacted_data", "encrypted_content", "item_id", "provider_type", "format"):
                if getattr(event, name):
                    fields[name] = getattr(event, name)
            if event.summary:
                fields["summary"] = True
        elif isinstance(event, ToolCallDelta):
            fields = self._part(event.part_index, ToolCall)
            fields.setdefault("id", "")
            fields.setdefault("name", "")
            fields["arguments_json"] = fields.get("arguments_json", "") + event.arguments_delta
            for name in ("id", "name", "signature", "item_id", "provider_type"):
                if getattr(event, name):
                    fields[name] = getattr(event, name)

    def parts(self) -> tuple[Part, ...]:
        if sorted(self._parts) != list(range(len(self._parts))):
            raise ValueError(f"part indexes are not dense: {sorted(self._parts)}")
        return tuple(self._kinds[i](**self._parts[i]) for i in range(len(self._parts)))

    def _part(self, index: int, kind: type) -> dict[str, Any]:
        known = self._kinds.setdefault(index, kind)
        if known is not kind:
            raise ValueError(f"part {index} is a {known.__name__}, not a {kind.__name__}")
        return self._parts.setdefault(index, {})

    def _append(self, index: int, kind: type, name: str, text: str) -> None:
        fields = self._part(index, kind)
        fields[name] = fields.get(name, "") + text


def fold(events: Iterable[StreamEvent]) -> tuple[Part, ...]:
    folder = PartFolder()
    for event in events:
        folder.add(event)
    return folder.parts()


def part_events(parts: Sequence[Part]) -> list[StreamEvent]:
    """The events that fold back into `parts`, one or two per part (tests
    and the unary-to-stream equivalence use it)."""
    events: list[StreamEvent] = []
    for index, part in enumerate(parts):
        if isinstance(part, TextPart):
            events.append(TextDelta(part.text, index))
        elif isinstance(part, RefusalPart):
            events.append(RefusalDelta(part.text, index))
        elif isinstance(part, ReasoningPart):
            events.append(ReasoningState(index, part.signature, part.redacted_data, part.encrypted_content,
                                         part.item_id, part.summary, part.provider_type, part.format))
            if part.text:
                events.append(ReasoningDelta(part.text, index))
        elif isinstance(part, ToolCall):
            events.append(ToolCallDelta(sum(isinstance(p, ToolCall) for p in parts[:index]), part.id, part.name,
                                        part.arguments_json, index, part.signature, part.item_id,
                                        part.provider_type))
    return events


# --- replay ------------------------------------------------------------------


def own(provider_type: str, part_provider_type: str) -> bool:
    """Whether a part's opaque state was produced by the target's provider
    type; state from any other type (or untagged) is dropped on replay."""
    return bool(part_provider_type) and part_provider_type == provider_type


def own_reasoning(parts: Iterable[Part], provider_type: str) -> list[ReasoningPart]:
    return [p for p in parts if isinstance(p, ReasoningPart) and own(provider_type, p.provider_type)]


def call_for_replay(call: ToolCall, provider_type: str) -> ToolCall:
    """The call without opaque state another provider type produced."""
    if own(provider_type, call.provider_type) or not (call.signature or call.item_id):
        return call
    return dataclasses.replace(call, signature="", item_id="", provider_type="")


def current_turn_start(messages: Sequence[ChatMessage]) -> int:
    """Index of the first message after the last user message: the assistant
    steps and tool results of the tool loop in progress ("current turn" in
    Anthropic's and Gemini's rules)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i + 1
    return 0


def texts(message: ChatMessage) -> list[str]:
    """The texts of a message's text parts (system prompts, user turns)."""
    return [p.text for p in message.content_parts() if isinstance(p, TextPart)]
