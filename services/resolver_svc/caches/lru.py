"""Two small building blocks of the resolver's caches.

LruCache: bounded, least recently used out first, with an optional time to
live. An expired entry is not returned by ``get`` but is kept (until evicted
or dropped) so ``get_stale`` can still serve it while config_svc is
unreachable.

SingleFlight: concurrent misses for one key share one fetch. A key that is
invalidated while its fetch is in flight is marked stale, so the (possibly
older) answer goes to the callers already waiting but is not stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]

# Told of every lookup a cache answers: (cache name, hit). Metrics count them.
LookupObserver = Callable[[str, bool], None]


def ignore_lookup(cache: str, hit: bool) -> None:
    """The default observer: nothing is counted."""


@dataclass
class _Entry(Generic[V]):
    value: V = field(repr=False)  # may be a plaintext key (CredentialCache)
    stored_at: float


class LruCache(Generic[K, V]):
    def __init__(self, max_entries: int, ttl_seconds: float | None = None, clock: Clock = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        # Never the values: some caches hold secrets.
        return f"LruCache(entries={len(self._entries)}, max={self._max}, ttl={self._ttl})"

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._ttl is not None and self._clock() - entry.stored_at >= self._ttl:
            return None
        self._entries.move_to_end(key)
        return entry.value

    def get_stale(self, key: K, max_stale_seconds: float) -> V | None:
        """The value even if expired, as long as it expired at most
        ``max_stale_seconds`` ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.stored_at
        if self._ttl is not None and age >= self._ttl + max_stale_seconds:
            return None
        return entry.value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = _Entry(value, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def keys(self) -> Iterator[K]:
        return iter(list(self._entries))


@dataclass
class _Flight(Generic[V]):
    task: "asyncio.Task[V] | None" = None
    stale: bool = False


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: K, fetch: Callable[[], Awaitable[V]], store: Callable[[V], None]) -> V:
        """``fetch()`` once for all concurrent callers of ``key``; ``store``
        the result unless the key was invalidated meanwhile."""
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight()
            flight.task = asyncio.create_task(self._run(key, flight, fetch, store))
            # Read the outcome even if every caller was cancelled, so a
            # failure is never reported as "exception was never retrieved".
            flight.task.add_done_callback(_consume)
            self._flights[key] = flight
        assert flight.task is not None
        # shield: one caller giving up must not cancel the fetch the others await.
        return await asyncio.shield(flight.task)

    async def _run(self, key: K, flight: _Flight[V], fetch: Callable[[], Awaitable[V]],
                   store: Callable[[V], None]) -> V:
        try:
            value = await fetch()
            if not flight.stale:
                store(value)
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def invalidate(self, key: K) -> None:
        flight = self._flights.pop(key, None)
        if flight is not None:
            flight.stale = True

    def invalidate_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._flights if predicate(k)]:
            self.invalidate(key)

    def invalidate_all(self) -> None:
        self.invalidate_where(lambda _k: True)

    def cancel_all(self) -> None:
        """On shutdown: no fetch outlives the server."""
        for flight in self._flights.values():
            if flight.task is not None:
                flight.task.cancel()
        self._flights.clear()


def _consume(task: "asyncio.Task[object]") -> None:
    if not task.cancelled():
        task.exception()
