"""Real servers for tests: config_svc on an ephemeral port with a real
channel, tokens minted through the store, secrets kept to the test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import AsyncIterator

import grpc

from modelplane_server.config_svc.server import ConfigServer, build_server
from modelplane_server.config_svc.settings import ConfigServiceSettings
from modelplane_server.runtime import crypto, tokens
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2_grpc

Metadata = tuple[tuple[str, str], ...]


def keyring_env(*key_ids: str) -> str:
    return ",".join(crypto.generate_key_entry(k) for k in key_ids or ("k1",))


def config_settings(database_url: str, keys: str | None = None, **overrides: object) -> ConfigServiceSettings:
    settings = ConfigServiceSettings(
        database_url=database_url,
        encryption_keys=keys or keyring_env("k1"),
        listen="127.0.0.1:0",
        own_addresses=("127.0.0.1:50051", "modelplane.internal:443"),
        allow_metadata_addresses=False,
        aws_region=None,
        db_pool_size=10,
        log_level="INFO",
    )
    return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class ConfigHarness:
    server: ConfigServer
    channel: grpc.aio.Channel
    stub: config_service_pb2_grpc.ConfigServiceStub
    admin: Metadata

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    async def token(self, role: Role, subject: str) -> str:
        minted = tokens.mint()
        await self.server.store.create_token("test", minted.token_id, role, subject, "", minted.secret_hash)
        return minted.token

    async def md(self, role: Role, subject: str) -> Metadata:
        return bearer(await self.token(role, subject))


async def start_config(settings: ConfigServiceSettings) -> AsyncIterator[ConfigHarness]:
    server = await build_server(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        harness = ConfigHarness(server, channel, config_service_pb2_grpc.ConfigServiceStub(channel), ())
        harness.admin = await harness.md(Role.ADMIN, "root-admin")
        yield harness
    finally:
        await channel.close()
        await server.stop(0)
