"""ShardedTransport: one origin's requests spread over several small
httpcore connection pools instead of one big one.

httpcore's AsyncConnectionPool re-examines every connection it holds each
time a request starts or its response closes (and for each idle connection
counts them all again), so with hundreds of streams open to one origin
every stream start and end costs a scan of hundreds of connections, on the
event loop that also carries every other stream's events. Small pools keep
each scan short.

A request goes to the first pool with fewer than `per_pool` requests in
flight, so at low concurrency only the first pool is used (its connections
stay warm) and the next one opens only when the earlier ones are busy; when
all are full it waits in the least busy one. With HTTP/2 each pool's
requests share its connections as streams, so a pool is then one
connection multiplexing up to `per_pool` streams.

The pools are httpcore's, driven directly (httpx's own transport would add
a layer per body chunk): this transport converts the request and response
and maps httpcore's errors to httpx's, as httpx's transport does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import Final

import httpcore
import httpx

# Connections (HTTP/1.1) or concurrent streams (HTTP/2) per pool. A scan
# is quadratic in the pool's idle connections; 16 keeps it to a few hundred
# cheap calls (at 32, a 1,024-stream run spent 2.6M calls in is_idle).
REQUESTS_PER_POOL: Final = 16


class ShardedTransport(httpx.AsyncBaseTransport):
    """make(n): a pool holding at most n connections."""

    def __init__(self, make: Callable[[int], httpcore.AsyncConnectionPool], max_connections: int,
                 per_pool: int = REQUESTS_PER_POOL) -> None:
        if max_connections < 1 or per_pool < 1:
            raise ValueError("max_connections and per_pool must be positive")
        full, rest = divmod(max_connections, per_pool)
        self._sizes = [per_pool] * full + ([rest] if rest else [])
        self._make = make
        self._pools: list[httpcore.AsyncConnectionPool] = []
        self._in_flight: list[int] = []

    @property
    def in_flight(self) -> list[int]:
        """Requests in flight per pool opened so far (for tests and metrics)."""
        return list(self._in_flight)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        index = self._choose()
        self._in_flight[index] += 1
        try:
            with _httpx_errors():
                response = await self._pools[index].handle_async_request(core_request)
        except BaseException:
            self._in_flight[index] -= 1
            raise
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response, lambda: self._release(index)),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.aclose()

    def _choose(self) -> int:
        in_flight, sizes = self._in_flight, self._sizes
        for index, busy in enumerate(in_flight):
            if busy < sizes[index]:
                return index
        if len(self._pools) < len(sizes):
            self._pools.append(self._make(sizes[len(self._pools)]))
            in_flight.append(0)
            return len(self._pools) - 1
        return min(range(len(in_flight)), key=in_flight.__getitem__)

    def _release(self, index: int) -> None:
        self._in_flight[index] -= 1


class _Body(httpx.AsyncByteStream):
    """The response body; closing it (once) ends the request's turn in its pool."""

    def __init__(self, response: httpcore.Response, release: Callable[[], None]) -> None:
        self._response = response
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, AsyncIterable)
        with _httpx_errors():
            async for chunk in stream:  # the stream itself, not aiter_stream(): no layer per chunk
                yield chunk

    async def aclose(self) -> None:
        try:
            with _httpx_errors():
                await self._response.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors as the httpx errors of the same name (httpx
    declares one for each), so callers see what httpx's transport raises."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise getattr(httpx, type(exc).__name__, httpx.TimeoutException)(str(exc)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, httpcore.UnsupportedProtocol) as exc:
        raise getattr(httpx, type(exc).__name__, httpx.TransportError)(str(exc)) from exc
