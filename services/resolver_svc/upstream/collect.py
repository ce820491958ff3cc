"""Fold stream events into the ChatResult a unary call would have returned."""

from __future__ import annotations

from collections.abc import AsyncIterable

from modelplane_server.resolver_svc.upstream.parts import PartFolder
from modelplane_server.resolver_svc.upstream.types import ChatResult, Finish, StreamEvent, Usage, UsageEvent


class StreamAccumulator:
    def __init__(self) -> None:
        self.parts = PartFolder()
        self.usage = Usage()
        self.finish: Finish | None = None

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, Finish):
            self.finish = event
        else:
            self.parts.add(event)

    def result(self) -> ChatResult:
        if self.finish is None:
            raise ValueError("stream has not finished")
        return ChatResult.of(self.parts.parts(), self.finish.finish_reason, self.usage,
                             self.finish.upstream_request_id)


async def collect(events: AsyncIterable[StreamEvent]) -> ChatResult:
    acc = StreamAccumulator()
    async for event in events:
        acc.add(event)
    return acc.result()
