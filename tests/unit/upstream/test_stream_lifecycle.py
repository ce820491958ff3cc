"""Connections: cancelling a stream closes the upstream connection, silence
past the idle timeout is a stall, and connections are pooled."""

from __future__ import annotations

import asyncio
import time

import pytest

from modelplane_server.resolver_svc.upstream import StreamStalled, TextDelta, UpstreamClient, UpstreamError, collect
from tests.fakes import KINDS, Canned, FakeUpstream, StreamReply
from tests.unit.upstream.conftest import CONVERSATION, target_for

SLOW = Canned(text="x" * 200, chunk_chars=1, delay_s=0.05)


@pytest.mark.parametrize("kind", KINDS)
async def test_aclose_closes_upstream_connection(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = SLOW
        stream = client.stream(target_for(fake), CONVERSATION)
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        started = time.monotonic()
        await stream.aclose()
        await fake.wait_for_disconnect(timeout=2.0)
        # Observed long before the fake would have finished (200 x 50 ms).
        assert time.monotonic() - started < 1.0
        assert fake.disconnects == 1


async def test_cancelling_the_consumer_task_closes_upstream(client: UpstreamClient) -> None:
    async with FakeUpstream.start("anthropic") as fake:
        fake.default = SLOW
        got_text = asyncio.Event()

        async def consume() -> None:
            async for event in client.stream(target_for(fake), CONVERSATION):
                if isinstance(event, TextDelta):
                    got_text.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_text.wait(), 2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await fake.wait_for_disconnect(timeout=2.0)
        assert fake.disconnects == 1


@pytest.mark.parametrize("kind", ["openai-compatible", "bedrock", "anthropic"])
async def test_stall_raises_stream_stalled(kind: str, client: UpstreamClient) -> None:
    async with FakeUpstream.start(kind) as fake:
        fake.default = Canned(text="abcdef", chunk_chars=1, stall_after=4)
        texts: list[str] = []
        with pytest.raises(StreamStalled) as info:
            async for event in client.stream(target_for(fake), CONVERSATION, idle_timeout=0.2):
                if isinstance(event, TextDelta):
                    texts.append(event.text)
        await fake.wait_for_disconnect()
    assert info.value.kind == "stream_stalled"
    assert len(fake.requests) == 1


async def test_stream_deadline_is_a_timeout() -> None:
    real = UpstreamClient(trust_env=False)
    try:
        async with FakeUpstream.start("openrouter") as fake:
            fake.default = SLOW
            with pytest.raises(UpstreamError) as info:
                await collect(
                    real.stream(
                        target_for(fake), CONVERSATION, deadline=time.monotonic() + 0.3, idle_timeout=5.0
                    )
                )
    finally:
        await real.aclose()
    assert info.value.kind == "timeout"


async def test_unary_deadline_is_a_timeout() -> None:
    real = UpstreamClient(trust_env=False)
    try:
        async with FakeUpstream.start("openai") as fake:
            # Headers arrive, then the body never does.
            fake.default = StreamReply([b"{"], stall_after=0)
            started = time.monotonic()
            with pytest.raises(UpstreamError) as info:
                await real.chat(target_for(fake), CONVERSATION, deadline=time.monotonic() + 0.3)
    finally:
        await real.aclose()
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 2.0


async def test_connections_are_pooled_per_origin(client: UpstreamClient) -> None:
    async with FakeUpstream.start("openai") as fake:
        for _ in range(3):
            await client.chat(target_for(fake), CONVERSATION)
        await collect(client.stream(target_for(fake), CONVERSATION))
        await client.list_models(target_for(fake))
        assert len(fake.requests) == 5
        assert fake.connections_opened == 1
