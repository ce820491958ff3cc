"""Caller authentication without I/O on the hot path.

A bearer token is verified once by config_svc (IntrospectToken) and the
answer kept, keyed by a hash of the token so the cache never holds a usable
secret, for a time to live. A revoked_token watch change drops it at once;
the TTL only bounds how long a verification is trusted if a change were
ever missed. While config_svc is unreachable, an expired verification is
still honoured for a while (static stability): revocations made meanwhile
reach the resolver with the watch when config_svc returns.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from modelplane_server.runtime import tokens
from modelplane_server.domain.types import Principal
from modelplane_server.domain.errors import Unauthenticated
from modelplane_server.resolver_svc.state.config_client import ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.caches.lru import LookupObserver, Clock, LruCache, SingleFlight, ignore_lookup
from modelplane_server.resolver_svc.state.snapshot import Snapshot

Introspect = Callable[[str], Awaitable[Principal]]


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    token_id: str


class CallerAuth:
    def __init__(self, introspect: Introspect, snapshot: Snapshot, *, max_entries: int, ttl_seconds: float,
                 stale_if_unreachable_seconds: float, clock: Clock | None = None,
                 observe: LookupObserver = ignore_lookup, max_bytes: int | None = None) -> None:
        self._introspect = introspect
        self._observe = observe
        self._snapshot = snapshot
        self._stale = stale_if_unreachable_seconds
        self.cache: LruCache[bytes, _Verified] = LruCache(max_entries, ttl_seconds, clock or time.monotonic,
                                                          max_bytes=max_bytes, size_of=_verified_size)
        self._flights: SingleFlight[bytes, _Verified] = SingleFlight()

    def __len__(self) -> int:
        return len(self.cache)

    async def authenticate(self, bearer: str) -> Principal:
        """The caller's Principal, for modelplane_server.runtime.interceptors' AuthInterceptor."""
        # Nothing can be answered before the first snapshot; say so rather
        # than make every caller wait on a token check first.
        self._snapshot.current()
        key = hashlib.sha256(bearer.encode()).digest()
        found = self.cache.get(key)
        self._observe("tokens", found is not None)
        if found is not None:
            return found.principal
        token_id, _ = tokens.parse(bearer)  # malformed: UNAUTHENTICATED without a round trip
        try:
            verified = await self._flights.do(key, lambda: self._verify(bearer, token_id),
                                              lambda v: self.cache.put(key, v))
        except ConfigUnreachable:
            stale = self.cache.get_stale(key, self._stale)
            if stale is None:
                raise
            return stale.principal
        except Unauthenticated:
            self.cache.pop(key)  # revoked meanwhile: do not let a stale entry answer later
            raise
        return verified.principal

    async def _verify(self, bearer: str, token_id: str) -> _Verified:
        return _Verified(await self._introspect(bearer), token_id)

    def invalidate(self, inv: Invalidations) -> None:
        if inv.everything:
            # A fresh snapshot means the resolver may have missed revocations:
            # every verification is checked again on its next use (and, as
            # an expired one, honoured only while config_svc is unreachable).
            self.cache.revalidate_all()
            self._flights.invalidate_all()
            return
        if not inv.revoked_tokens:
            return
        for key in self.cache.keys():
            entry = self.cache.get_stale(key, float("inf"))
            if entry is not None and entry.token_id in inv.revoked_tokens:
                self.cache.pop(key)
        # In-flight checks cannot be matched to an id cheaply; revocations are rare.
        self._flights.invalidate_all()

    def close(self) -> None:
        self._flights.cancel_all()


def _verified_size(key: bytes, verified: _Verified) -> int:
    p = verified.principal
    return (sys.getsizeof(key) + sys.getsizeof(verified) + sys.getsizeof(p) + sys.getsizeof(p.subject)
            + sys.getsizeof(verified.token_id))
