"""EndlessStreams' per-stream hooks, driven directly."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest

from modelplane_server.runtime.shutdown import EndlessStreams


async def test_a_cancelled_stream_closes_its_source_cleanly() -> None:
    streams = EndlessStreams(["/svc/Watch"])
    hooks = streams.hooks_for(SimpleNamespace(method="/svc/Watch"), None)  # type: ignore[arg-type]
    assert hooks is not None
    waiting = asyncio.Event()
    closed: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            waiting.set()
            await asyncio.sleep(3600)
            yield 2
        finally:
            closed.append(True)

    received: list[Any] = []

    async def consume() -> None:
        async for item in hooks.stream(None, source):  # type: ignore[arg-type]
            received.append(item)

    task = asyncio.create_task(consume())
    await waiting.wait()
    task.cancel()
    # Before the fix: RuntimeError "aclose(): asynchronous generator is already running".
    with pytest.raises(asyncio.CancelledError):
        await task
    assert received == [1] and closed == [True]


async def test_draining_ends_the_stream_with_its_source_closed() -> None:
    streams = EndlessStreams(["/svc/Watch"])
    hooks = streams.hooks_for(SimpleNamespace(method="/svc/Watch"), None)  # type: ignore[arg-type]
    assert hooks is not None
    closed: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            yield 1
            await asyncio.sleep(3600)
        finally:
            closed.append(True)

    items = hooks.stream(None, source)  # type: ignore[arg-type]
    assert await items.__anext__() == 1
    pending = asyncio.ensure_future(items.__anext__())
    await asyncio.sleep(0.01)
    streams.drain()
    with pytest.raises(StopAsyncIteration):
        await pending
    assert closed == [True]
