"""Read your writes across replicas: two config_svc processes and three
resolvers on one Postgres. Every write answers its revision; every read that
names it, on any resolver, reflects the write. Killing the config_svc a
resolver watches (SIGKILL) moves it to the other replica, where it resumes
from its revision without a full snapshot, and the guarantee holds
throughout."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import pytest
from google.protobuf import field_mask_pb2

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.cluster import ConfigProcess, config_process, minter
from tests.harness import Metadata, keyring_env
from tests.resolver_harness import ResolverHarness, eventually, start_resolver

pytestmark = pytest.mark.e2e

resolver_running = contextlib.asynccontextmanager(start_resolver)
GENERAL, EXPLORE = pb.OVERRIDE_CONTEXT_GENERAL, pb.OVERRIDE_CONTEXT_EXPLORE
REVISION_KEY = "x-modelplane-revision"
MIN_REVISION_KEY = "x-modelplane-min-revision"
ROUNDS = 200


@dataclass
class Cluster:
    configs: list[ConfigProcess]
    resolvers: list[ResolverHarness]
    admin: Metadata
    service: Metadata  # acts for alice on the resolvers, and writes her key


@contextlib.asynccontextmanager
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    keys = keyring_env("k1")
    async with config_process(database_url, keys) as a, config_process(database_url, keys) as b, \
            minter(database_url, keys) as tokens, contextlib.AsyncExitStack() as stack:
        admin = await tokens.md(Role.ADMIN, "ops")
        await seed(a.stub, admin)
        resolver_token = await tokens.token(Role.SERVICE, "resolver")
        resolvers = [await stack.enter_async_context(resolver_running(
            a.address, resolver_token, config_svc_addresses=(a.address, b.address))) for _ in range(3)]
        yield Cluster([a, b], resolvers, admin, await tokens.md(Role.SERVICE, "gateway"))


async def seed(stub: config_service_pb2_grpc.ConfigServiceStub, admin: Metadata) -> None:
    await stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="openai", type=pb.PROVIDER_TYPE_OPENAI, api_key="sk-central-0123456789")), metadata=admin)
    for name in ("m0", "m1", "spare"):
        await stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name=name, provider="openai", model_identifier=f"gpt-{name}", display_name=name.upper(),
            context_limit=128_000)), metadata=admin)
    await stub.UpdateSettings(cs.UpdateSettingsRequest(
        settings=pb.Settings(byok_enabled=True, personal_overrides_enabled=True),
        update_mask=field_mask_pb2.FieldMask(paths=["byok_enabled", "personal_overrides_enabled"])), metadata=admin)


async def write(method: Callable[..., Any], request: Any, md: Metadata) -> int:
    """Send a write; the revision it committed (the answer's field and trailer agree)."""
    call = method(request, metadata=md)
    response = await call
    trailer = dict(await call.trailing_metadata() or ())[REVISION_KEY]
    if "revision" in response.DESCRIPTOR.fields_by_name:
        assert response.revision == int(trailer)
    return int(trailer)


Check = Callable[[ResolverHarness, int, bool], Any]


async def one_write(c: Cluster, stub: config_service_pb2_grpc.ConfigServiceStub, i: int) -> tuple[int, Check]:
    """Round i's write (four kinds in turn: snapshot state and per-user data),
    its revision, and a check that a resolver answers with it."""
    alice = {"user": "alice"}
    flip = f"m{(i // 4) % 2}"
    kind = i % 4
    if kind == 0:  # admin override: the pushed snapshot
        revision = await write(stub.SetModelOverride, cs.SetModelOverrideRequest(context=GENERAL, model=flip), c.admin)

        async def check(r: ResolverHarness, at: int, by_metadata: bool) -> None:
            got = await resolve(r, rs.ResolveModelRequest(context=GENERAL, **alice), at, by_metadata, c.service)
            assert (got.model.name, got.layer) == (flip, rs.RESOLUTION_LAYER_ADMIN_OVERRIDE), (i, got.trace)
    elif kind == 1:  # alice's personal override: the user cache
        revision = await write(stub.SetPersonalOverride, cs.SetPersonalOverrideRequest(
            context=EXPLORE, model=flip, **alice), c.service)

        async def check(r: ResolverHarness, at: int, by_metadata: bool) -> None:
            got = await resolve(r, rs.ResolveModelRequest(context=EXPLORE, **alice), at, by_metadata, c.service)
            assert (got.model.name, got.layer) == (flip, rs.RESOLUTION_LAYER_PERSONAL_OVERRIDE), (i, got.trace)
    elif kind == 2:  # a model switched off and on
        enabled = (i // 4) % 2 == 1
        revision = await write(stub.UpdateModel, cs.UpdateModelRequest(
            model=pb.Model(name="spare", enabled=enabled), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])),
            c.admin)

        async def check(r: ResolverHarness, at: int, by_metadata: bool) -> None:
            got = await resolve(r, rs.ListAvailableModelsRequest(**alice), at, by_metadata, c.service)
            names = {m.name for g in got.groups for m in g.models}
            assert ("spare" in names) == enabled, (i, names)
    else:  # alice's own key saved and deleted: the user cache again
        saved = (i // 4) % 2 == 0
        if saved:
            revision = await write(stub.SetUserKey, cs.SetUserKeyRequest(
                provider="openai", api_key="sk-alice-0123456789", **alice), c.service)
        else:
            revision = await write(stub.DeleteUserKey, cs.DeleteUserKeyRequest(provider="openai", **alice),
                                   c.service)
        source = cs.CREDENTIAL_SOURCE_USER_KEY if saved else cs.CREDENTIAL_SOURCE_CENTRAL_KEY

        async def check(r: ResolverHarness, at: int, by_metadata: bool) -> None:
            got = await resolve(r, rs.ResolveCredentialRequest(provider="openai", **alice), at, by_metadata,
                                c.service)
            assert got.source == source, (i, got)
    return revision, check


async def resolve(r: ResolverHarness, request: Any, revision: int, by_metadata: bool, md: Metadata,
                  timeout: float = 10.0) -> Any:
    """Ask with min_revision in the request field, or in the metadata."""
    method = {rs.ResolveModelRequest: r.stub.ResolveModel, rs.ListAvailableModelsRequest: r.stub.ListAvailableModels,
              rs.ResolveCredentialRequest: r.stub.ResolveCredential}[type(request)]
    if by_metadata:
        return await method(request, metadata=(*md, (MIN_REVISION_KEY, str(revision))), timeout=timeout)
    request.min_revision = revision
    return await method(request, metadata=md, timeout=timeout)


@pytest.mark.timeout(240)  # 2 config_svc processes, 3 resolvers, 240 rounds of 4 calls on a shared machine
async def test_every_read_on_every_resolver_reflects_the_write_200_times_and_through_a_failover(
        database_url: str) -> None:
    async with cluster(database_url) as c:
        a, b = c.configs
        for i in range(ROUNDS):
            revision, check = await one_write(c, a.stub, i)
            for r in c.resolvers:
                await check(r, revision, i % 2 == 1)  # every read right after the write, never retried

        # Kill (SIGKILL) the config_svc the first resolver watches, and go on
        # writing through the other one at once.
        victim = next(p for p in c.configs if p.address == c.resolvers[0].server.watcher.address)
        survivor = b if victim is a else a
        moved = [r for r in c.resolvers if r.server.watcher.address == victim.address]
        snapshots = [r.server.config_calls().get("WatchConfig.snapshots") for r in c.resolvers]
        assert snapshots == [1, 1, 1]
        victim.kill()
        killed = time.monotonic()
        for i in range(ROUNDS, ROUNDS + 40):
            revision, check = await one_write(c, survivor.stub, i)
            for r in c.resolvers:  # the first rounds wait for the failover: the guarantee holds meanwhile
                await check(r, revision, i % 2 == 1)
        for r in moved:
            assert r.server.watcher.address == survivor.address and r.server.watcher.connected
            assert r.server.config_calls()["failovers"] >= 1
        # Resumed from their revision in the same epoch: no second full snapshot anywhere.
        assert [r.server.config_calls().get("WatchConfig.snapshots") for r in c.resolvers] == [1, 1, 1]
        assert time.monotonic() - killed < 60  # sanity only; bench/propagation.py measures the failover

        # The survivor knows every resolver, all watching it, none behind.
        async def all_on_survivor() -> None:
            answer = await survivor.stub.ListResolvers(cs.ListResolversRequest(), metadata=c.admin)
            assert {s.resolver.id for s in answer.resolvers} == {r.server.reporter.identity.id
                                                                 for r in c.resolvers}
            assert all(s.watching and s.config_svc.endswith(survivor.address.rsplit(":", 1)[1])
                       and s.lag == 0 for s in answer.resolvers), answer

        await eventually(all_on_survivor, timeout=15, interval=0.2)
