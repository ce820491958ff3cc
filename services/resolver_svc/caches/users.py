"""Per-user data (personal overrides, which providers the user holds a key
for): fetched from config_svc on first use, kept in an LRU bounded by
entries and bytes, dropped when a watch event says the user changed. A fresh
snapshot (a resync) does not empty it: every entry is marked for
revalidation and refetched on its next use, and served as it was if
config_svc cannot be reached then.

There is no time to live: the watch is what keeps entries true. While
config_svc is away, cached users keep resolving; a user never seen before
cannot be resolved (UNAVAILABLE).

Sized for 100,000 active users by default: an entry for a user without
overrides or keys is estimated at about 370 bytes (their empty overrides and
key set are shared), 37 MB for 100,000, within the default 64 MiB budget.
"""

from __future__ import annotations

import sys
from typing import Awaitable, Callable

from modelplane_server.domain.view import UserView
from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.resolver_svc.caches.lru import LookupObserver, LruCache, SingleFlight, ignore_lookup
from modelplane_server.resolver_svc.state.config_client import ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.state.from_config import NO_KEYS, NO_OVERRIDES, user_view

FetchUserConfig = Callable[[str], Awaitable[cs.UserConfig]]


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
    def __init__(self, fetch: FetchUserConfig, max_entries: int,
                 observe: LookupObserver = ignore_lookup, *, max_bytes: int | None = None) -> None:
        self._fetch = fetch
        self._observe = observe
        self.cache: LruCache[str, UserView] = LruCache(max_entries, max_bytes=max_bytes, size_of=user_size)
        self._cache = self.cache
        self._flights: SingleFlight[str, UserView] = SingleFlight()

    def __len__(self) -> int:
        return len(self._cache)

    def cached(self, user: str) -> UserView | None:
        found = self._cache.get(user)
        if found is not None:
            self._observe("users", True)
        return found

    async def get(self, user: str) -> UserView:
        found = self.cached(user)
        if found is not None:
            return found
        self._observe("users", False)
        try:
            return await self._flights.do(user, lambda: self._load(user), lambda v: self._cache.put(user, v))
        except ConfigUnreachable:
            stale = self._cache.get_stale(user, 0.0)  # awaiting revalidation after a resync
            if stale is None:
                raise
            return stale

    async def _load(self, user: str) -> UserView:
        return user_view(await self._fetch(user))

    def invalidate(self, inv: Invalidations) -> None:
        if inv.everything:
            self._cache.revalidate_all()
            self._flights.invalidate_all()
            return
        for user in inv.users:
            self._cache.pop(user)
            self._flights.invalidate(user)

    def close(self) -> None:
        self._flights.cancel_all()
