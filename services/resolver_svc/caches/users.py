"""Per-user data (personal overrides, which providers the user holds a key
for): fetched from config_svc on first use, kept in a bounded LRU, dropped
when a watch event says the user changed, all dropped on a fresh snapshot.

There is no time to live: the watch is what keeps entries true. While
config_svc is away, cached users keep resolving; a user never seen before
cannot be resolved (UNAVAILABLE).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from modelplane_server.domain.view import UserView
from modelplane.v1 import config_service_pb2 as cs
from modelplane_server.resolver_svc.caches.lru import LookupObserver, LruCache, SingleFlight, ignore_lookup
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.state.from_config import user_view

FetchUserConfig = Callable[[str], Awaitable[cs.UserConfig]]


class UserCache:
    def __init__(self, fetch: FetchUserConfig, max_entries: int,
                 observe: LookupObserver = ignore_lookup) -> None:
        self._fetch = fetch
        self._observe = observe
        self._cache: LruCache[str, UserView] = LruCache(max_entries)
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
        return await self._flights.do(user, lambda: self._load(user), lambda v: self._cache.put(user, v))

    async def _load(self, user: str) -> UserView:
        return user_view(await self._fetch(user))

    def invalidate(self, inv: Invalidations) -> None:
        if inv.everything:
            self._cache.clear()
            self._flights.invalidate_all()
            return
        for user in inv.users:
            self._cache.pop(user)
            self._flights.invalidate(user)

    def close(self) -> None:
        self._flights.cancel_all()
