"""Per-user data (personal overrides, which providers the user holds a key
for): fetched from config_svc on first use, kept in an LRU bounded by
entries and bytes, dropped when a watch event says the user changed. A fresh
snapshot (a resync) does not empty it: every entry is marked for
revalidation and refetched on its next use, and served as it was if
config_svc cannot be reached then.

There is no time to live: the watch is what keeps entries true. While
config_svc is away, cached users keep resolving; a user never seen before
cannot be resolved (UNAVAILABLE).

Users missing together are fetched together: a miss is sent at once when
fewer than MAX_BATCHES_IN_FLIGHT fetches are out, and misses arriving while
they are out wait and go in one GetUserConfigs call when one returns, so a
cold start under load costs config_svc a call per batch, not per user,
without delaying a lone miss.

Sized for 100,000 active users by default: an entry for a user without
overrides or keys is estimated at about 370 bytes (their empty overrides and
key set are shared), 37 MB for 100,000, within the default 64 MiB budget.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Awaitable, Callable, Final

from modelplane_server.domain.validation import MAX_USERS_PER_BATCH
from modelplane_server.domain.view import UserView
from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.resolver_svc.caches.lru import LookupObserver, LruCache, SingleFlight, ignore_lookup
from modelplane_server.resolver_svc.state.config_client import ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.state.from_config import NO_KEYS, NO_OVERRIDES, user_view

FetchUserConfigs = Callable[[list[str]], Awaitable[Sequence[cs.UserConfig]]]

# Batch fetches out at once: the first misses go without waiting; later
# ones gather while these are out.
MAX_BATCHES_IN_FLIGHT: Final = 2


def user_size(user: str, view: UserView) -> int:
    """Estimated bytes of one entry (key, view and what it holds)."""
    overrides = view.personal_overrides
    size = sys.getsizeof(user) + sys.getsizeof(view)
    if overrides is not NO_OVERRIDES:  # the shared empty values are owned by no entry
        size += sys.getsizeof(overrides)
    if view.key_providers is not NO_KEYS:
        size += sys.getsizeof(view.key_providers)
    if view.user is not user:
        size += sys.getsizeof(view.user)
    size += sum(sys.getsizeof(model) for model in overrides.values())
    return size + sum(sys.getsizeof(provider) for provider in view.key_providers)


class UserCache:
    def __init__(self, fetch: FetchUserConfigs, max_entries: int,
                 observe: LookupObserver = ignore_lookup, *, max_bytes: int | None = None) -> None:
        self._batches = _Batches(fetch)
        self._observe = observe
        self.cache: LruCache[str, UserView] = LruCache(max_entries, max_bytes=max_bytes, size_of=user_size)
        self._flights: SingleFlight[str, UserView] = SingleFlight()

    @property
    def batches_sent(self) -> int:
        """GetUserConfigs calls made so far."""
        return self._batches.sent

    def __len__(self) -> int:
        return len(self.cache)

    def cached(self, user: str) -> UserView | None:
        found = self.cache.get(user)
        if found is not None:
            self._observe("users", True)
        return found

    async def get(self, user: str) -> UserView:
        found = self.cached(user)
        if found is not None:
            return found
        self._observe("users", False)
        try:
            return await self._flights.do(user, lambda: self._load(user), lambda v: self.cache.put(user, v))
        except ConfigUnreachable:
            stale = self.cache.get_stale(user, 0.0)  # awaiting revalidation after a resync
            if stale is None:
                raise
            return stale

    async def _load(self, user: str) -> UserView:
        return user_view(await self._batches.fetch(user))

    def invalidate(self, inv: Invalidations) -> None:
        if inv.everything:
            self.cache.revalidate_all()
            self._flights.invalidate_all()
            return
        for user in inv.users:
            self.cache.pop(user)
            self._flights.invalidate(user)

    def close(self) -> None:
        self._flights.cancel_all()
        self._batches.close()


class _Batches:
    """One user's data at a time for callers, several users' per call to config_svc."""

    def __init__(self, fetch: FetchUserConfigs) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[str, asyncio.Future[cs.UserConfig]]] = []
        self._out: set[asyncio.Task[None]] = set()
        self.sent = 0

    async def fetch(self, user: str) -> cs.UserConfig:
        done: asyncio.Future[cs.UserConfig] = asyncio.get_running_loop().create_future()
        self._waiting.append((user, done))
        self._send()
        return await done

    def _send(self) -> None:
        while self._waiting and len(self._out) < MAX_BATCHES_IN_FLIGHT:
            batch = [(u, f) for u, f in self._waiting[:MAX_USERS_PER_BATCH] if not f.done()]
            del self._waiting[:MAX_USERS_PER_BATCH]
            if not batch:
                continue
            task = asyncio.create_task(self._run(batch))
            self._out.add(task)
            task.add_done_callback(self._returned)

    def _returned(self, task: asyncio.Task[None]) -> None:
        self._out.discard(task)
        self._send()

    async def _run(self, batch: list[tuple[str, asyncio.Future[cs.UserConfig]]]) -> None:
        self.sent += 1
        try:
            configs = await self._fetch(list(dict.fromkeys(u for u, _ in batch)))
        except Exception as exc:  # every waiter learns the outcome
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        else:
            found = {c.user: c for c in configs}
            for user, done in batch:
                if done.done():
                    continue
                config = found.get(user)
                if config is None:  # config_svc answers every distinct name asked; say so if it did not
                    done.set_exception(RuntimeError(f"GetUserConfigs answered without user {user!r}"))
                else:
                    done.set_result(config)
        finally:  # cancelled (shutdown): no one waits for an answer that will not come
            for _, done in batch:
                if not done.done():
                    done.cancel()

    def close(self) -> None:
        for task in list(self._out):
            task.cancel()
        for _, done in self._waiting:
            done.cancel()
        self._waiting.clear()
