"""Graceful shutdown of a grpc.aio server.

Order (see `graceful_stop`):
1. Health reports NOT_SERVING for every service, frozen there, so load
   balancers and clients watching health (grpc client-side health checking
   uses Health/Watch) move traffic elsewhere.
2. Streams that never end on their own (WatchConfig, Health/Watch) are ended
   cleanly with status OK: a resolver's watcher treats that as "reconnect",
   reaches another replica, and resumes after its last revision, so nothing is
   lost. Waiting for them would always use up the whole grace period.
3. The server stops accepting calls; unary calls and ordinary streams (chats)
   in flight get up to the grace period to finish, then are cancelled.
4. The caller closes its pool and clients after `graceful_stop` returns.

`EndlessStreams` is an interceptor; put it last (innermost) in the chain, so
the outer interceptors see a normal end and log and count status OK.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import grpc
import grpc.aio

from modelplane_server.runtime.health import Health
from modelplane_server.runtime.pipeline import HookInterceptor, Hooks

HEALTH_WATCH = "/grpc.health.v1.Health/Watch"

# Time for Health/Watch streams to deliver NOT_SERVING before they are ended.
HEALTH_SETTLE_SECONDS = 0.1


class EndlessStreams(HookInterceptor):
    """Ends the named server-streaming methods when `drain()` is called."""

    def __init__(self, methods: Iterable[str] = (HEALTH_WATCH,)) -> None:
        self.methods = frozenset(methods)
        self._draining = asyncio.Event()

    def drain(self) -> None:
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def hooks_for(self, details: grpc.HandlerCallDetails,
                  handler: grpc.RpcMethodHandler[Any, Any]) -> Hooks | None:
        return _EndOnDrain(self._draining) if details.method in self.methods else None


class _EndOnDrain(Hooks):
    def __init__(self, draining: asyncio.Event) -> None:
        self.draining = draining

    async def around(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        # A stream written with context.write() (Health/Watch): returning
        # without a value ends it with OK.
        async def run() -> Any:
            return await call()

        task = asyncio.ensure_future(run())
        if await _first_or_drained(task, self.draining):
            return task.result()
        return None

    async def stream(
        self, context: grpc.aio.ServicerContext[Any, Any], items: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        source = items()
        # Each step runs as a task so it can be abandoned on drain; all steps
        # share one context so what the handler sets in it persists.
        step_context = contextvars.copy_context()
        try:
            while True:
                step = asyncio.get_running_loop().create_task(_next(source), context=step_context)
                if not await _first_or_drained(step, self.draining):
                    return
                done, item = step.result()
                if done:
                    return
                yield item
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()


async def _next(source: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return False, await source.__anext__()
    except StopAsyncIteration:
        return True, None


async def _first_or_drained(task: asyncio.Future[Any], draining: asyncio.Event) -> bool:
    """True when `task` finished (its result or exception is the caller's to
    take); False, with `task` cancelled and awaited, when the drain came first."""
    if not draining.is_set():
        drained = asyncio.ensure_future(draining.wait())
        try:
            await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the call itself was cancelled
            # Wait for the step to end too: the stream's source must not be
            # running when the caller closes it (aclose() would fail).
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            drained.cancel()
    if task.done():
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


async def graceful_stop(server: grpc.aio.Server, health: Health, streams: EndlessStreams,
                        grace: float | None) -> None:
    """Steps 1–3 above. grace None waits for in-flight calls without limit;
    0 cancels them at once (tests)."""
    await health.shutting_down()
    if grace is None or grace > 0:
        await asyncio.sleep(HEALTH_SETTLE_SECONDS)
    streams.drain()
    await server.stop(grace)
