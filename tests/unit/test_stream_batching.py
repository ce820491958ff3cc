"""StreamChat's batching: ready_batches groups only what was already
waiting (the first item never waits for more), and stream_events joins a
batch's deltas without changing what the stream means."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane_server.domain.types import Model
from modelplane_server.resolver_svc import upstream as up
from modelplane_server.resolver_svc.api import chat_pb
from modelplane_server.resolver_svc.api.read_ahead import ready_batches
from tests.e2e.chat_fold import fold


async def test_the_first_item_goes_alone_and_what_waited_meanwhile_goes_together() -> None:
    more, finished = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        yield 1
        await more.wait()
        yield 2
        yield 3
        yield 4
        finished.set()

    batches = ready_batches(source())
    assert await anext(batches) == [1]  # not held back for 2, which has not come
    more.set()
    await finished.wait()  # the writer is busy; 2, 3 and 4 arrive meanwhile
    assert [b async for b in batches] == [[2, 3, 4]]


async def test_an_error_comes_after_the_items_before_it() -> None:
    async def source() -> AsyncGenerator[int, None]:
        yield 1
        yield 2
        raise ValueError("upstream failed")

    seen: list[int] = []
    with pytest.raises(ValueError, match="upstream failed"):
        async for batch in ready_batches(source()):
            seen += batch
    assert seen == [1, 2]


async def test_closing_the_batches_closes_the_source_at_once() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncGenerator[int, None]:
        try:
            yield 1
            await asyncio.Event().wait()  # an upstream that goes quiet
            yield 2
        finally:
            closed.set()

    batches = ready_batches(source())
    assert await anext(batches) == [1]
    await batches.aclose()
    assert closed.is_set()


MODEL = Model(name="m", provider="p", model_identifier="m-1", display_name="M", context_limit=1000)


def test_a_run_of_deltas_of_one_part_becomes_one_delta() -> None:
    events: list[up.StreamEvent] = [
        up.TextDelta("Hel", 0), up.TextDelta("lo", 0), up.ReasoningDelta("hm", 1), up.ReasoningDelta("m", 1),
        up.TextDelta(" a", 2), up.RefusalDelta("no", 3), up.RefusalDelta("pe", 3), up.TextDelta("b", 2),
        up.UsageEvent(up.Usage(input_tokens=3, output_tokens=2)), up.TextDelta("c", 2), up.TextDelta("d", 4),
    ]
    out = chat_pb.stream_events(events, MODEL)
    assert [(e.WhichOneof("event"), e.part_index) for e in out] == [
        ("text_delta", 0), ("reasoning_delta", 1), ("text_delta", 2), ("refusal_delta", 3), ("text_delta", 2),
        ("usage", 0), ("text_delta", 2), ("text_delta", 4)]
    assert [e.text_delta or e.reasoning_delta or e.refusal_delta for e in out if not e.HasField("usage")] == [
        "Hello", "hmm", " a", "nope", "b", "c", "d"]
    # Folded as the proto says, joined and separate deltas make the same turn.
    separate = [chat_pb.stream_event(e, MODEL) for e in events]
    assert fold(out) == fold(separate)


def test_tool_call_pieces_and_reasoning_state_go_one_for_one() -> None:
    events: list[up.StreamEvent] = [
        up.ToolCallDelta(0, "call_1", "weather", '{"ci', part_index=0),
        up.ToolCallDelta(0, None, None, 'ty":"Paris"}', part_index=0),
        up.ReasoningState(signature_delta="sig", part_index=1), up.ReasoningState(signature_delta="ned", part_index=1),
    ]
    out = chat_pb.stream_events(events, MODEL)
    assert out == [chat_pb.stream_event(e, MODEL) for e in events]
    assert isinstance(out[0], rs.ChatEvent)
