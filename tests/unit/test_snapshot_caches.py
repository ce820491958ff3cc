"""The resolver's caches: bounds, TTLs, single flight, invalidation races,
stale answers while config_svc is unreachable. Fake fetchers, no network."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from modelplane_server.runtime import tokens
from modelplane_server.domain.types import Principal, Role
from modelplane_server.domain.errors import NotFound, Unauthenticated, Unavailable
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.caches.caller_auth import CallerAuth
from modelplane_server.resolver_svc.state.config_client import ConfigUnreachable
from modelplane_server.resolver_svc.state.config_state import Invalidations
from modelplane_server.resolver_svc.caches.credentials import CredentialCache
from modelplane_server.runtime.scrub import KNOWN_SECRETS, MARK
from modelplane_server.resolver_svc.caches.lru import LruCache
from modelplane_server.resolver_svc.state.snapshot import Snapshot
from modelplane_server.resolver_svc.caches.users import FetchUserConfigs, UserCache
from modelplane_server.resolver_svc.state.watcher import backoff_delay
from tests.unit.test_snapshot import snapshot_event


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_bound_and_recency() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_lru_ttl_and_stale_window() -> None:
    clock = Clock()
    cache: LruCache[str, int] = LruCache(10, ttl_seconds=5, clock=clock)
    cache.put("a", 1)
    clock.now = 5
    assert cache.get("a") is None
    assert cache.get_stale("a", 10) == 1
    clock.now = 15
    assert cache.get_stale("a", 10) is None


def test_backoff_is_bounded_and_jittered() -> None:
    assert backoff_delay(0, 0.2, 10, rand=lambda: 0.0) == pytest.approx(0.1)
    assert backoff_delay(3, 0.2, 10, rand=lambda: 1.0) == pytest.approx(1.6)
    assert backoff_delay(50, 0.2, 10, rand=lambda: 1.0) == pytest.approx(10)


def user_config(user: str, *keys: str, revision: int = 1) -> cs.UserConfig:
    return cs.UserConfig(user=user, key_providers=keys, revision=revision, personal_overrides=[
        pb.ModelOverride(context=pb.OVERRIDE_CONTEXT_ROOT, model="haiku", user=user)])


def batched(fetch_one: Callable[[str], Awaitable[cs.UserConfig]]) -> FetchUserConfigs:
    """A config_svc answering GetUserConfigs one user after another."""
    async def fetch(users: list[str]) -> list[cs.UserConfig]:
        return [await fetch_one(u) for u in users]
    return fetch


async def test_user_misses_together_are_fetched_together() -> None:
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def fetch(users: list[str]) -> list[cs.UserConfig]:
        batches.append(users)
        await release.wait()
        return [user_config(u, "openrouter") for u in users]

    cache = UserCache(fetch, max_entries=1000)
    waiters = [asyncio.create_task(cache.get(f"user-{i}")) for i in range(50)]
    waiters += [asyncio.create_task(cache.get("user-7"))]  # a user asked twice is fetched once
    for _ in range(10):  # every caller reaches the cache, and the first calls go out
        await asyncio.sleep(0)
    # The first misses go at once, one call each; the rest wait for one of them to return.
    assert batches == [["user-0"], ["user-1"]]
    release.set()
    views = await asyncio.gather(*waiters)
    assert batches[2:] == [[f"user-{i}" for i in range(2, 50)]] and cache.batches_sent == 3
    assert [v.user for v in views] == [f"user-{i}" for i in range(50)] + ["user-7"]
    assert all(cache.cached(f"user-{i}") is not None for i in range(50))


async def test_a_failed_batch_fails_each_of_its_users() -> None:
    async def fetch(users: list[str]) -> list[cs.UserConfig]:
        raise ConfigUnreachable("down")

    cache = UserCache(fetch, max_entries=10)
    got = await asyncio.gather(*(cache.get(u) for u in ("a", "b", "c")), return_exceptions=True)
    assert all(isinstance(g, ConfigUnreachable) for g in got)


async def test_user_cache_single_flight() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def fetch(user: str) -> cs.UserConfig:
        calls.append(user)
        await release.wait()
        return user_config(user, "openrouter")

    cache = UserCache(batched(fetch), max_entries=10)
    waiters = [asyncio.create_task(cache.get("alice")) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    views = await asyncio.gather(*waiters)
    assert calls == ["alice"]
    assert all(v.key_providers == {"openrouter"} for v in views)
    assert await cache.get("alice") is views[0]
    assert calls == ["alice"]


async def test_user_cache_invalidation_during_fetch_is_not_overwritten() -> None:
    answers = [user_config("alice", "old"), user_config("alice", "new")]
    started, release = asyncio.Event(), asyncio.Event()

    async def fetch(user: str) -> cs.UserConfig:
        answer = answers.pop(0)
        started.set()
        await release.wait()
        return answer

    cache = UserCache(batched(fetch), max_entries=10)
    first = asyncio.create_task(cache.get("alice"))
    await started.wait()
    cache.invalidate(Invalidations(users=frozenset({"alice"})))  # the user changed while we were reading
    release.set()
    assert (await first).key_providers == {"old"}  # the caller already waiting gets the answer...
    assert cache.cached("alice") is None  # ...but it is not kept
    assert (await cache.get("alice")).key_providers == {"new"}


async def test_user_cache_revalidated_by_snapshot_and_bounded() -> None:
    calls: list[str] = []
    up = {"yes": True}

    async def fetch(user: str) -> cs.UserConfig:
        calls.append(user)
        if not up["yes"]:
            raise ConfigUnreachable("down")
        return user_config(user, "new" if len(calls) > 3 else "old")

    cache = UserCache(batched(fetch), max_entries=2)
    for u in ("a", "b", "c"):
        await cache.get(u)
    assert len(cache) == 2 and cache.cached("a") is None
    # A resync keeps the entries but has each fetched again on its next use...
    cache.invalidate(Invalidations(everything=True))
    assert len(cache) == 2 and cache.cached("b") is None
    assert (await cache.get("b")).key_providers == {"new"} and calls[-1] == "b"
    assert cache.cached("b") is not None
    # ...and served as it was while config_svc cannot be reached.
    up["yes"] = False
    assert (await cache.get("c")).key_providers == {"old"}
    with pytest.raises(ConfigUnreachable):
        await cache.get("a")  # evicted: nothing to serve


async def test_user_cache_bounded_by_bytes_with_shared_empty_values() -> None:
    async def fetch(user: str) -> cs.UserConfig:
        return cs.UserConfig(user=user)

    cache = UserCache(batched(fetch), max_entries=1_000_000, max_bytes=100 * 400)
    for i in range(1000):
        await cache.get(f"user-{i:06d}")
    assert 90 <= len(cache) <= 120  # about 370 bytes an entry
    assert cache.cache.bytes <= 100 * 400 and cache.cache.evictions == 1000 - len(cache)
    assert cache.cached("user-000999") is not None and cache.cached("user-000000") is None
    a, b = cache.cached("user-000999"), cache.cached("user-000998")
    assert a is not None and b is not None
    assert a.key_providers is b.key_providers and a.personal_overrides is b.personal_overrides


def test_lru_bytes_bound_and_oversized_values() -> None:
    cache: LruCache[str, str] = LruCache(100, max_bytes=1000, size_of=lambda k, v: len(v))
    cache.put("a", "x" * 300)  # 500 with the entry overhead
    cache.put("b", "x" * 300)
    assert cache.bytes == 1000 and len(cache) == 2
    cache.put("a", "x" * 100)  # replacing counts the new size only
    assert cache.bytes == 800
    cache.put("c", "x" * 100)
    assert cache.keys() and list(cache.keys()) == ["a", "c"] and cache.evictions == 1
    cache.put("huge", "x" * 2000)  # larger than the whole budget: not kept, nothing else dropped
    assert list(cache.keys()) == ["a", "c"] and cache.evictions == 2
    cache.pop("a")
    cache.clear()
    assert cache.bytes == 0


def ready_snapshot() -> Snapshot:
    snap = Snapshot()
    snap.set_ambient_aws(False)
    snap.apply(snapshot_event())
    return snap


async def test_caller_auth_caches_and_drops_revoked_tokens() -> None:
    minted = tokens.mint()
    calls: list[str] = []
    revoked: set[str] = set()

    async def introspect(token: str) -> Principal:
        calls.append(token)
        token_id = tokens.parse(token)[0]
        if token_id in revoked:
            raise Unauthenticated("revoked")
        return Principal(Role.MEMBER, "alice", token_id)

    auth = CallerAuth(introspect, ready_snapshot(), max_entries=10, ttl_seconds=300,
                      stale_if_unreachable_seconds=900)
    assert (await auth.authenticate(minted.token)).subject == "alice"
    assert (await auth.authenticate(minted.token)).subject == "alice"
    assert len(calls) == 1
    revoked.add(minted.token_id)
    auth.invalidate(Invalidations(revoked_tokens=frozenset({minted.token_id})))
    with pytest.raises(Unauthenticated):
        await auth.authenticate(minted.token)
    with pytest.raises(Unauthenticated):  # malformed: refused without asking config_svc
        await auth.authenticate("not-a-token")
    assert len(calls) == 2


async def test_caller_auth_not_ready_before_snapshot() -> None:
    async def introspect(token: str) -> Principal:
        raise AssertionError("must not be called")

    auth = CallerAuth(introspect, Snapshot(), max_entries=10, ttl_seconds=300, stale_if_unreachable_seconds=0)
    with pytest.raises(Unavailable) as err:
        await auth.authenticate(tokens.mint().token)
    assert err.value.reason == "SNAPSHOT_NOT_READY"


async def test_caller_auth_uses_expired_entry_only_while_unreachable() -> None:
    clock = Clock()
    minted = tokens.mint()
    mode = {"up": True}

    async def introspect(token: str) -> Principal:
        if not mode["up"]:
            raise ConfigUnreachable("down")
        return Principal(Role.SERVICE, "runner", minted.token_id)

    auth = CallerAuth(introspect, ready_snapshot(), max_entries=10, ttl_seconds=300,
                      stale_if_unreachable_seconds=900, clock=clock)
    await auth.authenticate(minted.token)
    mode["up"] = False
    clock.now = 400  # expired, config_svc down: still trusted (static stability)
    assert (await auth.authenticate(minted.token)).subject == "runner"
    clock.now = 1300  # beyond the stale window
    with pytest.raises(ConfigUnreachable):
        await auth.authenticate(minted.token)


async def test_credentials_ttl_and_invalidation() -> None:
    clock = Clock()
    store = {("openai", ""): "sk-central", ("openai", "alice"): "sk-alice"}
    calls: list[tuple[str, str]] = []

    async def fetch(provider: str, user: str) -> str:
        calls.append((provider, user))
        if (provider, user) not in store:
            raise NotFound("none", reason="USER_KEY_NOT_FOUND")
        return store[(provider, user)]

    creds = CredentialCache(fetch, max_entries=10, ttl_seconds=60, stale_if_unreachable_seconds=0, clock=clock)
    assert await creds.get("openai", "alice") == "sk-alice"
    assert await creds.get("openai") == "sk-central"
    assert await creds.get("openai", "alice") == "sk-alice"
    assert len(calls) == 2
    assert "sk-" not in repr(creds)

    store[("openai", "alice")] = "sk-alice-2"
    creds.invalidate(Invalidations(credentials=frozenset({("openai", "alice")})))
    assert await creds.get("openai", "alice") == "sk-alice-2"
    clock.now = 61
    assert await creds.get("openai") == "sk-central"
    assert len(calls) == 4

    creds.invalidate(Invalidations(deleted_providers=frozenset({"openai"})))
    assert len(creds) == 0
    with pytest.raises(NotFound):
        await creds.get("openai", "bob")


async def test_a_resync_revalidates_tokens_and_credentials_instead_of_dropping_them() -> None:
    minted = tokens.mint()
    up = {"yes": True}
    introspections: list[str] = []

    async def introspect(token: str) -> Principal:
        introspections.append(token)
        if not up["yes"]:
            raise ConfigUnreachable("down")
        return Principal(Role.MEMBER, "alice", minted.token_id)

    auth = CallerAuth(introspect, ready_snapshot(), max_entries=10, ttl_seconds=300,
                      stale_if_unreachable_seconds=900, max_bytes=1_000_000)
    await auth.authenticate(minted.token)
    auth.invalidate(Invalidations(everything=True))
    await auth.authenticate(minted.token)  # checked again
    assert len(introspections) == 2
    auth.invalidate(Invalidations(everything=True))
    up["yes"] = False
    assert (await auth.authenticate(minted.token)).subject == "alice"  # kept for an outage
    assert auth.cache.bytes > 0

    store = {("openai", ""): "sk-central"}

    async def fetch(provider: str, user: str) -> str:
        if not up["yes"]:
            raise ConfigUnreachable("down")
        if (provider, user) not in store:
            raise NotFound("none", reason="PROVIDER_NOT_FOUND")
        return store[(provider, user)]

    up["yes"] = True
    creds = CredentialCache(fetch, max_entries=10, ttl_seconds=60, stale_if_unreachable_seconds=0,
                            max_bytes=1_000_000)
    assert await creds.get("openai") == "sk-central"
    creds.invalidate(Invalidations(everything=True))
    up["yes"] = False
    assert await creds.get("openai") == "sk-central"  # revalidation due, config_svc away: served
    up["yes"] = True
    del store[("openai", "")]
    with pytest.raises(NotFound):
        await creds.get("openai")  # revalidated: gone
    up["yes"] = False
    with pytest.raises(ConfigUnreachable):
        await creds.get("openai")  # and never served again


async def test_a_key_fetched_while_invalidated_is_still_known_to_the_log_scrubber() -> None:
    """The fetch's callers use the key even when the cache does not keep it
    (the user rotated it meanwhile): its log lines must still be scrubbed of it."""
    key = "sk-rotated-mid-fetch-0123456789abcdef"
    started, release = asyncio.Event(), asyncio.Event()

    async def fetch(provider: str, user: str) -> str:
        started.set()
        await release.wait()
        return key

    creds = CredentialCache(fetch, max_entries=10, ttl_seconds=60, stale_if_unreachable_seconds=0)
    try:
        pending = asyncio.create_task(creds.get("openai", "alice"))
        await started.wait()
        creds.invalidate(Invalidations(credentials=frozenset({("openai", "alice")})))
        release.set()
        assert await pending == key
        assert len(creds) == 0  # not kept...
        assert KNOWN_SECRETS.scrub(f"echoed {key}") == f"echoed {MARK}"  # ...yet known
    finally:
        creds.close()
    assert KNOWN_SECRETS.scrub(key) == key  # forgotten once the cache is closed
