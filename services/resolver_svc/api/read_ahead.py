"""ready_batches: a stream's items in order, grouped by what was already
waiting, so a slow writer sends fewer, larger messages.

StreamChat writes one gRPC message per yield, and under many concurrent
streams each write waits its turn on the event loop; meanwhile more deltas
arrive. A task reads the source ahead of the writer; each batch is the first
item as soon as it comes plus every item that came while the previous batch
was being written. Nothing is held back waiting for more: an idle writer
gets each item alone, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Final, TypeVar

T = TypeVar("T")

# Items read ahead of the writer before the reader waits (and with it the
# upstream connection's flow control): a bound on memory, not on batches.
READ_AHEAD: Final = 1024


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


async def ready_batches(source: AsyncGenerator[T, None], limit: int = READ_AHEAD) -> AsyncGenerator[list[T], None]:
    """Closing this generator (or the caller's cancellation) cancels the
    reader, which closes `source` at once; an error from `source` is raised
    here after the items before it."""
    queue: asyncio.Queue[T | _End] = asyncio.Queue(limit)

    async def read() -> None:
        end = _End(None)
        try:
            async with contextlib.aclosing(source) as items:
                async for item in items:
                    await queue.put(item)
        except Exception as error:
            end = _End(error)
        await queue.put(end)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while True:
            batch: list[T] = []
            item = await queue.get()
            while not isinstance(item, _End):
                batch.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                yield batch
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
