"""min_revision on the resolver: a call waits for a revision its resolver
has not applied yet and answers once it has; past its deadline it fails
UNAVAILABLE REVISION_NOT_REACHED, naming both revisions. The typed client
sends the revision of its own writes without being asked.

Propagation is held back for real: the resolver knows only config_svc A,
which is stopped while the writes go through replica B on the same
database, and restarted on its port later."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from modelplane.client import NO_RETRY, AsyncModelplaneClient, Unavailable
from modelplane_server.config_svc.server import ConfigServer
from modelplane_server.config_svc.server import build_server as build_config_server
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness, Metadata, bearer, config_settings, keyring_env, start_config
from tests.integration.helpers import failure
from tests.resolver_harness import ResolverHarness, error_reason, eventually, free_port, start_resolver

pytestmark = pytest.mark.e2e

config_running = contextlib.asynccontextmanager(start_config)
resolver_running = contextlib.asynccontextmanager(start_resolver)
GENERAL = pb.OVERRIDE_CONTEXT_GENERAL
MIN_REVISION_KEY = "x-modelplane-min-revision"


async def seed(cfg: ConfigHarness) -> None:
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-ant-central-0123456789")), metadata=cfg.admin)
    for name in ("opus", "haiku"):
        await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
            name=name, provider="anthropic", model_identifier=f"claude-{name}", display_name=name,
            context_limit=200_000)), metadata=cfg.admin)


@dataclass
class HeldBack:
    b: ConfigHarness  # the replica writes go through
    resolver: ResolverHarness  # watches only A, which is stopped
    restart_a: Callable[[], Awaitable[None]]
    # Tokens the resolver verified, and alice's data it cached, while A was up
    # (unary calls go to A too): a service acting for alice, alice, an admin.
    service: Metadata
    member: Metadata
    admin_token: str


@contextlib.asynccontextmanager
async def held_back(database_url: str, **resolver_settings: object) -> AsyncIterator[HeldBack]:
    """Writes through B stay off the resolver until `restart_a()`."""
    keys = keyring_env("k1")
    settings_a = config_settings(database_url, keys, listen=f"127.0.0.1:{free_port()}")
    a = await build_config_server(settings_a)
    restarted: list[ConfigServer] = []
    try:
        async with config_running(config_settings(database_url, keys)) as b:
            await seed(b)
            token = await b.token(Role.SERVICE, "resolver")
            async with resolver_running(f"127.0.0.1:{a.port}", token, **resolver_settings) as resolver:
                service, member = await b.md(Role.SERVICE, "gateway"), await b.md(Role.MEMBER, "alice")
                admin_token = await b.token(Role.ADMIN, "ops")
                for md, user in ((service, "alice"), (member, ""), (bearer(admin_token), "alice")):
                    await eventually(lambda: resolver.resolve_model(md, GENERAL, user=user))
                await a.stop(0)

                async def lost() -> None:
                    assert not resolver.server.watcher.connected

                await eventually(lost)

                async def restart_a() -> None:
                    restarted.append(await build_config_server(settings_a))

                yield HeldBack(b, resolver, restart_a, service, member, admin_token)
    finally:
        for server in restarted:
            await server.stop(0)


async def test_a_call_waits_for_its_revision_and_answers_with_it(database_url: str) -> None:
    async with held_back(database_url) as held:
        b, resolver = held.b, held.resolver
        service = held.service
        written = await b.stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="haiku"),
                                                metadata=b.admin)
        assert resolver.server.snapshot.applied.revision < written.revision
        # Asked without it, the resolver answers from what it has: the default.
        stale = await resolver.stub.ResolveModel(rs.ResolveModelRequest(user="alice", context=GENERAL),
                                                 metadata=service)
        assert stale.model.name == "opus"
        waiting = asyncio.ensure_future(resolver.stub.ResolveModel(
            rs.ResolveModelRequest(user="alice", context=GENERAL, min_revision=written.revision),
            metadata=service, timeout=20))
        by_metadata = asyncio.ensure_future(resolver.stub.ResolveModel(
            rs.ResolveModelRequest(user="alice", context=GENERAL),
            metadata=(*service, (MIN_REVISION_KEY, str(written.revision))), timeout=20))
        await asyncio.sleep(0.5)
        assert not waiting.done() and not by_metadata.done()
        assert len(resolver.server.snapshot.applied) == 2  # two calls parked on the gate, nothing polling
        await held.restart_a()
        for answered in (await waiting, await by_metadata):
            assert answered.model.name == "haiku" and answered.layer == rs.RESOLUTION_LAYER_ADMIN_OVERRIDE
        assert len(resolver.server.snapshot.applied) == 0


async def test_a_revision_not_reached_by_the_deadline_is_unavailable_and_says_which(database_url: str) -> None:
    async with held_back(database_url, min_revision_max_wait_seconds=1.0) as held:
        b, resolver = held.b, held.resolver
        member = held.member
        written = await b.stub.SetModelOverride(cs.SetModelOverrideRequest(context=GENERAL, model="haiku"),
                                                metadata=b.admin)
        applied = resolver.server.snapshot.applied.revision
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: resolver.stub.ResolveModel(
                rs.ResolveModelRequest(context=GENERAL, min_revision=written.revision), metadata=member,
                timeout=10),  # the resolver's own limit (1 s) comes first
            lambda: resolver.stub.ListAvailableModels(
                rs.ListAvailableModelsRequest(min_revision=written.revision), metadata=member,
                timeout=0.7),  # the call's deadline comes first: answered shortly before it
            lambda: resolver.stub.ResolveCredential(
                rs.ResolveCredentialRequest(provider="anthropic"),
                metadata=(*member, (MIN_REVISION_KEY, str(written.revision)))),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert time.monotonic() - started >= 0.5  # it waited before giving up
            err = info.value
            assert (err.code(), error_reason(err)) == (grpc.StatusCode.UNAVAILABLE, "REVISION_NOT_REACHED")
            said = failure(err).metadata
            assert said == {"applied_revision": str(applied), "min_revision": str(written.revision),
                            "request_id": said["request_id"]}
            assert f"{applied}" in (err.details() or "") and f"{written.revision}" in (err.details() or "")
        assert len(resolver.server.snapshot.applied) == 0  # no waiter left behind


async def test_a_bad_min_revision_is_the_callers_mistake(cfg: ConfigHarness) -> None:
    await seed(cfg)
    async with resolver_running(cfg.address, await cfg.token(Role.SERVICE, "resolver")) as resolver:
        member = await cfg.md(Role.MEMBER, "alice")
        bad = [
            (resolver.stub.ResolveModel(rs.ResolveModelRequest(context=GENERAL, min_revision=-1), metadata=member),
             "min_revision"),
            (resolver.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(),
                                             metadata=(*member, (MIN_REVISION_KEY, "soon"))), MIN_REVISION_KEY),
            (resolver.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(),
                                             metadata=(*member, (MIN_REVISION_KEY, "-3"))), MIN_REVISION_KEY),
        ]
        for call, field in bad:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert (info.value.code(), error_reason(info.value)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                                     "INVALID_FIELD")
            assert field in (info.value.details() or "")
        # Already applied: answered at once.
        current = resolver.server.snapshot.applied.revision
        answer = await resolver.stub.ResolveModel(rs.ResolveModelRequest(context=GENERAL, min_revision=current),
                                                  metadata=member, timeout=0.5)
        assert answer.model.name == "opus"


async def test_the_typed_client_waits_for_its_own_writes_by_itself(database_url: str) -> None:
    async with held_back(database_url, min_revision_max_wait_seconds=0.3) as held:
        b, resolver = held.b, held.resolver
        async with AsyncModelplaneClient(b.address, resolver.address, token=held.admin_token, retry=NO_RETRY) as mp:
            assert mp.revision == 0
            stale = await mp.resolve_model("general", user="alice")  # nothing written yet: no wait
            assert stale.model.name == "opus"
            await mp.set_model_override("general", "haiku")
            written = mp.revision
            assert written == int((await mp.get_settings()).revision)  # the latest write, seen by a read
            alice = mp.acting_for("alice")
            assert alice.revision == written  # views share what was written
            with pytest.raises(Unavailable) as info:
                await alice.resolve_model("general")
            assert info.value.reason == "REVISION_NOT_REACHED"
            assert info.value.metadata["min_revision"] == str(written)
            await held.restart_a()

            async def caught_up() -> None:
                assert resolver.server.snapshot.applied.revision >= written

            await eventually(caught_up, timeout=10)
            resolved = await alice.resolve_model("general")
            assert resolved.model.name == "haiku"
            await mp.delete_model("opus")  # answers Empty: the revision comes from the trailer
            assert mp.revision > written
            listed = await mp.list_available_models(user="alice", timeout=10)
            assert [m.name for g in listed.groups for m in g.models] == ["haiku"]
