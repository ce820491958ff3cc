"""Fold stream events into the ChatResult a unary call would have returned."""

from __future__ import annotations

from collections.abc import AsyncIterable

from modelplane_server.resolver_svc.upstream.types import (
    ChatResult,
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)


class StreamAccumulator:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        self.usage = Usage()
        self.finish: Finish | None = None

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self.calls.setdefault(event.index, ["", "", ""])
            call[0] = event.id or call[0]
            call[1] = event.name or call[1]
            call[2] += event.arguments_delta
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, Finish):
            self.finish = event

    def result(self) -> ChatResult:
        if self.finish is None:
            raise ValueError("stream has not finished")
        return ChatResult(
            text="".join(self.text),
            reasoning="".join(self.reasoning),
            tool_calls=tuple(ToolCall(c[0], c[1], c[2]) for _, c in sorted(self.calls.items())),
            finish_reason=self.finish.finish_reason,
            usage=self.usage,
            upstream_request_id=self.finish.upstream_request_id,
        )


async def collect(events: AsyncIterable[StreamEvent]) -> ChatResult:
    acc = StreamAccumulator()
    async for event in events:
        acc.add(event)
    return acc.result()
