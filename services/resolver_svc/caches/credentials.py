"""Plaintext credentials for upstream calls, fetched from config_svc
(AccessCredential, service role only) on demand and kept briefly.

A `credential` watch change for a (provider, user) drops that key at once,
a deleted provider drops all of its keys, a fresh snapshot has every key fetched again on its next use.
While config_svc is unreachable an expired key is still used for a while,
like the rest of the snapshot (static stability).

Secrets are never logged, never put in an exception message, and never in a
repr: the cache's repr shows sizes only.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from modelplane_server.domain.errors import NotFound
from modelplane_server.runtime.scrub import KNOWN_SECRETS
from modelplane_server.resolver_svc.state.config_client import ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.caches.lru import Clock, LookupObserver, LruCache, SingleFlight, ignore_lookup

FetchCredential = Callable[[str, str], Awaitable[str]]
CredentialKey = tuple[str, str]  # (provider, user); user "" names the provider's central key


class CredentialCache:
    def __init__(self, fetch: FetchCredential, *, max_entries: int, ttl_seconds: float,
                 stale_if_unreachable_seconds: float, clock: Clock | None = None,
                 observe: LookupObserver = ignore_lookup, max_bytes: int | None = None) -> None:
        self._fetch = fetch
        self._observe = observe
        self._stale = stale_if_unreachable_seconds
        self.cache: LruCache[CredentialKey, str] = LruCache(max_entries, ttl_seconds, clock or time.monotonic,
                                                            max_bytes=max_bytes, size_of=_credential_size)
        self._flights: SingleFlight[CredentialKey, str] = SingleFlight()
        # Keys registered with KNOWN_SECRETS, forgotten again on close (as
        # many as it keeps at most; older ones it has dropped itself).
        self._held: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"CredentialCache(entries={len(self.cache)})"

    def __len__(self) -> int:
        return len(self.cache)

    async def get(self, provider: str, user: str = "") -> str:
        """The plaintext key: the user's own when ``user`` is set, else the
        provider's central key. Raises NotFound (USER_KEY_NOT_FOUND,
        PROVIDER_NOT_FOUND) when none is stored, Unavailable when config_svc
        cannot be reached and nothing usable is cached."""
        key = (provider, user)
        found = self.cache.get(key)
        self._observe("credentials", found is not None)
        if found is not None:
            return self._known(found)  # still the newest: a key in use stays in the log scrubber
        try:
            return await self._flights.do(key, lambda: self._fetched(provider, user),
                                          lambda secret: self.cache.put(key, secret))
        except ConfigUnreachable:
            stale = self.cache.get_stale(key, self._stale)
            if stale is None:
                raise
            return self._known(stale)
        except NotFound:
            self.cache.pop(key)  # deleted meanwhile (say while a resync was due): never serve it later
            raise

    async def _fetched(self, provider: str, user: str) -> str:
        # Known as soon as it is fetched, whether or not the cache keeps it
        # (a fetch invalidated meanwhile is still used by its callers).
        return self._known(await self._fetch(provider, user))

    def _known(self, secret: str) -> str:
        """`secret`, known to the log processor from now on (as the newest):
        a provider that echoes it (base64, masked, in a header httpcore logs
        at DEBUG) is scrubbed."""
        KNOWN_SECRETS.add(secret)
        self._held[secret] = None
        self._held.move_to_end(secret)
        if len(self._held) > KNOWN_SECRETS.capacity:
            self._held.popitem(last=False)
        return secret

    def invalidate(self, inv: Invalidations) -> None:
        if inv.everything:
            # Fetched again on next use; the old one serves only while
            # config_svc is unreachable (as an expired key would).
            self.cache.revalidate_all()
            self._flights.invalidate_all()
            return
        for key in inv.credentials:
            self.cache.pop(key)
            self._flights.invalidate(key)
        if inv.deleted_providers:
            gone = inv.deleted_providers
            for key in self.cache.keys():
                if key[0] in gone:
                    self.cache.pop(key)
            self._flights.invalidate_where(lambda k: k[0] in gone)

    def close(self) -> None:
        self._flights.cancel_all()
        KNOWN_SECRETS.discard(*self._held)
        self._held.clear()


def _credential_size(key: CredentialKey, secret: str) -> int:
    return sys.getsizeof(key) + sys.getsizeof(key[0]) + sys.getsizeof(key[1]) + sys.getsizeof(secret)
