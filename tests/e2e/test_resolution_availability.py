"""Static stability: the resolver answers before config_svc is gone, while it
is gone, and catches up when it returns; before its first snapshot it says
it is not ready."""

from __future__ import annotations

import contextlib
import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2

from modelplane_server.runtime import tokens
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from tests.e2e.test_resolution import failure, seed
from tests.harness import ConfigHarness, Metadata, bearer, config_settings, start_config
from tests.resolver_harness import ResolverHarness, error_reason, eventually, free_port, start_resolver

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

config_running = contextlib.asynccontextmanager(start_config)
resolver_running = contextlib.asynccontextmanager(start_resolver)


async def disable_model(cfg: ConfigHarness, name: str) -> None:
    await cfg.stub.UpdateModel(cs.UpdateModelRequest(
        model=pb.Model(name=name, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])),
        metadata=cfg.admin)


async def expect_root_model(resolver: ResolverHarness, md: Metadata, name: str) -> None:
    async def check() -> None:
        got = await resolver.resolve_model(md)
        assert got.model.name == name, got.model.name
    await eventually(check)


async def test_keeps_answering_while_config_svc_is_down_and_resyncs(database_url: str) -> None:
    address_settings = config_settings(database_url, listen=f"127.0.0.1:{free_port()}")
    async with contextlib.AsyncExitStack() as stack:
        async with config_running(address_settings) as cfg:
            await seed(cfg)
            alice = await cfg.md(Role.MEMBER, "alice")
            service = await cfg.md(Role.SERVICE, "agent-runner")
            resolver = await stack.enter_async_context(
                resolver_running(cfg.address, await cfg.token(Role.SERVICE, "resolver")))
            await expect_root_model(resolver, alice, "opus")
            await resolver.resolve_model(service, user="bob")  # bob's data is cached too
        # config_svc is gone: everything already known keeps answering.
        for _ in range(3):
            assert (await resolver.resolve_model(alice)).model.name == "opus"
            assert (await resolver.resolve_model(service, user="bob")).model.name == "opus"
            assert [g.provider for g in (await resolver.available(alice)).groups] == ["anthropic"]
        assert await resolver.health() == SERVING
        # A user never seen before cannot be looked up now.
        err = await failure(resolver.resolve_model(service, user="carol"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE

        # Another config_svc replica takes a write the resolver cannot see yet.
        async with config_running(config_settings(database_url)) as replica:
            await disable_model(replica, "opus")
        assert (await resolver.resolve_model(alice)).model.name == "opus"

        # config_svc is back at its address: the resolver resumes and catches up.
        async with config_running(address_settings) as cfg:
            await expect_root_model(resolver, alice, "haiku")
            await cfg.stub.SetDefaultModel(cs.SetDefaultModelRequest(model="haiku"), metadata=cfg.admin)

            async def default_layer() -> None:
                got = await resolver.resolve_model(alice)
                assert got.layer == rs.RESOLUTION_LAYER_DEFAULT_MODEL
            await eventually(default_layer)
            assert await resolver.health() == SERVING
            assert resolver.server.config_calls()["WatchConfig"] >= 2


async def test_not_ready_until_the_first_snapshot(database_url: str) -> None:
    port = free_port()
    service = tokens.mint()
    any_caller = bearer(tokens.mint().token)
    async with resolver_running(f"127.0.0.1:{port}", service.token, wait_ready=False) as resolver:
        err = await failure(resolver.resolve_model(any_caller))
        assert (err.code(), error_reason(err)) == (grpc.StatusCode.UNAVAILABLE, "SNAPSHOT_NOT_READY")
        assert await resolver.health() == NOT_SERVING
        assert await resolver.health("") == NOT_SERVING

        async with config_running(config_settings(database_url, listen=f"127.0.0.1:{port}")) as cfg:
            await cfg.server.store.create_token("test", service.token_id, Role.SERVICE, "resolver", "",
                                                service.secret_hash)
            await seed(cfg)

            async def serving() -> None:
                assert await resolver.health() == SERVING
                assert await resolver.health("") == SERVING
            await eventually(serving, timeout=10)
            await expect_root_model(resolver, await cfg.md(Role.MEMBER, "alice"), "opus")

