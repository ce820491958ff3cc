"""Helpers for the governance end-to-end tests: a resolver built with all
its parts (ledger, spend book) but our own UpstreamClient, a fake
openai-compatible upstream configured through config_svc as an admin
would, and reads of the ledger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc as rs_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.server import ResolverServer, build_server
from modelplane_server.resolver_svc.upstream import UpstreamClient
from tests.fakes import FakeUpstream
from tests.harness import ConfigHarness, Metadata
from tests.resolver_harness import eventually, resolver_settings

# $3 in, $15 out per 1M tokens = 3 and 15 micro-USD per token; the fakes
# report 12 in, 7 out: 12*3 + 7*15 = 141 micro-USD a chat.
PRICING = pb.Pricing(input_per_mtok=3.0, output_per_mtok=15.0)
CHAT_COST = 141


@dataclass
class Resolver:
    server: ResolverServer
    stub: rs_grpc.ResolverServiceStub
    channel: grpc.aio.Channel


@contextlib.asynccontextmanager
async def governed_resolver(cfg: ConfigHarness, service_token: str | None = None, *, config_address: str = "",
                            **settings: Any) -> AsyncIterator[Resolver]:
    """A resolver with the default servicer (ledger and spend checks) over
    its own UpstreamClient, closed here after the resolver stopped."""
    token = service_token or await cfg.token(Role.SERVICE, "resolver")
    upstream = UpstreamClient(trust_env=False)
    server = await build_server(resolver_settings(config_address or cfg.address, token, **settings),
                                upstream=upstream)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        await server.wait_ready(10)
        yield Resolver(server, rs_grpc.ResolverServiceStub(channel), channel)
    finally:
        await channel.close()
        await server.stop(0)
        await upstream.aclose()


async def local_model(cfg: ConfigHarness, fake: FakeUpstream, name: str = "gpt", *, provider: str = "local",
                      pricing: pb.Pricing | None = PRICING, **fields: Any) -> pb.Model:
    """An openai-compatible provider at the fake (once) and a model on it."""
    try:
        await cfg.stub.GetProvider(cs.GetProviderRequest(name=provider), metadata=cfg.admin)
    except grpc.aio.AioRpcError:
        await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
            name=provider, type=pb.PROVIDER_TYPE_OPENAI_COMPATIBLE, base_url=fake.base_url,
            api_key=fake.api_key or "")), metadata=cfg.admin)
    model = pb.Model(name=name, provider=provider, model_identifier=f"{name}-id", display_name=name,
                     context_limit=100_000, **fields)
    if pricing is not None:
        model.pricing.CopyFrom(pricing)
    return await cfg.stub.CreateModel(cs.CreateModelRequest(model=model), metadata=cfg.admin)


def ask(text: str = "Hello?", **fields: Any) -> rs.ChatRequest:
    return rs.ChatRequest(messages=[rs.ChatMessage(role=rs.CHAT_ROLE_USER, text=text)], **fields)


async def stream_all(stub: rs_grpc.ResolverServiceStub, request: rs.ChatRequest, md: Metadata
                     ) -> list[rs.ChatEvent]:
    return [event async for event in stub.StreamChat(request, metadata=md)]


async def records(cfg: ConfigHarness, where: str = "true") -> list[dict[str, Any]]:
    rows = await cfg.server.store.pool.fetch(f"SELECT * FROM usage_records WHERE {where} ORDER BY end_time")
    return [dict(r) for r in rows]


async def wait_for_records(cfg: ConfigHarness, count: int, where: str = "true", timeout: float = 10.0
                           ) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        found = await records(cfg, where)
        assert len(found) >= count, f"{len(found)} of {count} records"
        return found
    return await eventually(check, timeout=timeout)


async def wait_until_sent(resolver: ResolverServer, timeout: float = 10.0) -> None:
    ledger = resolver.ledger
    assert ledger is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while len(ledger):
        assert asyncio.get_running_loop().time() < deadline, f"{len(ledger)} records still buffered"
        await asyncio.sleep(0.05)


async def caught_up(cfg: ConfigHarness, *resolvers: Resolver, timeout: float = 10.0) -> None:
    """Every resolver has applied config_svc's latest write (milliseconds, pushed)."""
    revision = await cfg.server.store.current_revision()
    deadline = asyncio.get_running_loop().time() + timeout
    while any(r.server.snapshot.revision < revision for r in resolvers):
        assert asyncio.get_running_loop().time() < deadline, "a resolver did not catch up with config_svc"
        await asyncio.sleep(0.01)
