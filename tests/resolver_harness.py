"""A real resolver for tests: resolver_svc on an ephemeral port, watching a
real config_svc, with a real channel. Mirrors tests/harness.py."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resolver_service_pb2_grpc
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.server import SERVICE_NAME, ResolverServer, build_server
from modelplane_server.resolver_svc.settings import ResolverSettings

Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")


def resolver_settings(config_address: str, service_token: str, **overrides: object) -> ResolverSettings:
    settings = ResolverSettings(
        config_svc_address=config_address,
        service_token=service_token,
        listen="127.0.0.1:0",
        config_call_timeout_seconds=5.0,
        user_cache_size=1000,
        token_cache_size=1000,
        token_ttl_seconds=300.0,
        credential_cache_size=100,
        credential_ttl_seconds=60.0,
        stale_if_unavailable_seconds=900.0,
        # Short, so tests that stop and restart config_svc resync quickly.
        reconnect_initial_seconds=0.05,
        reconnect_max_seconds=0.5,
        # The botocore chain can wait on instance metadata; tests need no bedrock ambient mode.
        ambient_aws=False,
        ambient_aws_refresh_seconds=300.0,
        log_level="INFO",
    )
    return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]


def free_port() -> int:
    """A loopback port nothing listens on (for a config_svc started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of a failed call ("" when none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 5.0, interval: float = 0.02) -> T:
    """check() until it stops raising AssertionError (or an RPC error), or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, grpc.aio.AioRpcError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


@dataclass
class ResolverHarness:
    server: ResolverServer
    channel: grpc.aio.Channel
    stub: resolver_service_pb2_grpc.ResolverServiceStub
    health_stub: health_pb2_grpc.HealthStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def health(self, service: str = SERVICE_NAME) -> int:
        reply = await self.health_stub.Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)

    async def serving(self) -> bool:
        return await self.health() == health_pb2.HealthCheckResponse.SERVING

    async def resolve_model(self, md: Metadata, context: int = pb.OVERRIDE_CONTEXT_ROOT, *, user: str = "",
                            chat_model: str = "") -> rs.ResolvedModel:
        return await self.stub.ResolveModel(
            rs.ResolveModelRequest(user=user, context=context, chat_model=chat_model),  # type: ignore[arg-type]
            metadata=md)

    async def available(self, md: Metadata, *, user: str = "", last_used: str = "") -> rs.ListAvailableModelsResponse:
        return await self.stub.ListAvailableModels(
            rs.ListAvailableModelsRequest(user=user, last_used_model=last_used), metadata=md)

    async def credential(self, md: Metadata, provider: str, *, user: str = "") -> rs.CredentialResolution:
        return await self.stub.ResolveCredential(rs.ResolveCredentialRequest(user=user, provider=provider),
                                                 metadata=md)

    async def key_status(self, md: Metadata, *, user: str = "") -> rs.ListUserKeyStatusResponse:
        return await self.stub.ListUserKeyStatus(rs.ListUserKeyStatusRequest(user=user), metadata=md)


async def start_resolver(config_address: str, service_token: str, *, wait_ready: bool = True,
                         ready_timeout: float = 10.0, **overrides: object) -> AsyncIterator[ResolverHarness]:
    server = await build_server(resolver_settings(config_address, service_token, **overrides))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        if wait_ready:
            await server.wait_ready(ready_timeout)
        yield ResolverHarness(server, channel, resolver_service_pb2_grpc.ResolverServiceStub(channel),
                              health_pb2_grpc.HealthStub(channel))
    finally:
        await channel.close()
        await server.stop(0)
