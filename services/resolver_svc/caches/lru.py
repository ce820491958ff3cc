"""Two small building blocks of the resolver's caches.

LruCache: bounded by entries and bytes, least recently used out first, with
an optional time to live. An expired entry is not returned by ``get`` but is kept (until evicted
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
from typing import Awaitable, Callable, Final, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]

# Told of every lookup a cache answers: (cache name, hit). Metrics count them.
LookupObserver = Callable[[str, bool], None]


def ignore_lookup(cache: str, hit: bool) -> None:
    """The default observer: nothing is counted."""


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V = field(repr=False)  # may be a plaintext key (CredentialCache)
    stored_at: float
    size: int
    generation: int


# What an entry costs besides its key and value: the OrderedDict's slot and
# links, the _Entry object, the key tuple (measured with tracemalloc, CPython
# 3.11, rounded up).
ENTRY_OVERHEAD_BYTES: Final = 200


class LruCache(Generic[K, V]):
    """Bounded by entries and, given max_bytes and size_of, by bytes:
    size_of(key, value) estimates what an entry holds in memory (shared
    pieces counted where they are owned, not per entry); least recently
    used entries go first when either bound is passed.

    revalidate_all() marks every entry as unconfirmed at once (O(1)): get()
    no longer returns them, get_stale() still does, so a resync can refetch
    on use while a config_svc outage still has something to serve.
    """

    def __init__(self, max_entries: int, ttl_seconds: float | None = None, clock: Clock = time.monotonic, *,
                 max_bytes: int | None = None, size_of: Callable[[K, V], int] | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._max = max_entries
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._generation = 0
        self.bytes = 0
        self.evictions = 0

    @property
    def max_entries(self) -> int:
        return self._max

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        # Never the values: some caches hold secrets.
        return (f"LruCache(entries={len(self._entries)}, max={self._max}, bytes={self.bytes}, "
                f"max_bytes={self._max_bytes}, ttl={self._ttl})")

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != self._generation:
            return None
        if self._ttl is not None and self._clock() - entry.stored_at >= self._ttl:
            return None
        self._entries.move_to_end(key)
        return entry.value

    def get_stale(self, key: K, max_stale_seconds: float) -> V | None:
        """The value even if expired or awaiting revalidation, as long as it
        expired at most ``max_stale_seconds`` ago."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.stored_at
        if self._ttl is not None and age >= self._ttl + max_stale_seconds:
            return None
        return entry.value

    def put(self, key: K, value: V) -> None:
        size = ENTRY_OVERHEAD_BYTES + self._size_of(key, value) if self._size_of is not None else 0
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        if self._max_bytes is not None and size > self._max_bytes:
            self.evictions += 1  # larger than the whole budget: not kept at all
            return
        self._entries[key] = _Entry(value, self._clock(), size, self._generation)
        self.bytes += size
        while len(self._entries) > self._max or (self._max_bytes is not None and self.bytes > self._max_bytes):
            _key, gone = self._entries.popitem(last=False)
            self.bytes -= gone.size
            self.evictions += 1

    def pop(self, key: K) -> None:
        gone = self._entries.pop(key, None)
        if gone is not None:
            self.bytes -= gone.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def revalidate_all(self) -> None:
        self._generation += 1

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
