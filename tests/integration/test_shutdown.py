"""Graceful shutdown of `python -m modelplane_server.config_svc serve`, run as operators run it
(a subprocess, settings from the environment), then sent SIGTERM:

- health turns NOT_SERVING at once (seen on a Health/Watch stream),
- an in-flight unary call still completes,
- a WatchConfig stream is ended cleanly (status OK; resolvers reconnect),
- the process exits 0 within the grace period;
- and a call slower than the grace period is cut off, not waited for.

The unary call is held in flight by locking the table it reads.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from tests.harness import keyring_env

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Running:
    process: asyncio.subprocess.Process
    address: str
    admin: tuple[tuple[str, str], ...]


async def _run(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.config_svc", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def _start(database_url: str, grace_seconds: float) -> AsyncIterator[Running]:
    env = {**os.environ, "DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keyring_env("k1"),
           "CONFIG_SVC_LISTEN": "127.0.0.1:0", "CONFIG_SVC_METRICS_LISTEN": "off",
           "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS": str(grace_seconds)}
    admin = await _run(env, "bootstrap-admin", "--subject", "shutdown-admin")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.config_svc", "serve", env=env,
                                                   stdout=asyncio.subprocess.PIPE)
    drain: asyncio.Task[bytes] | None = None
    try:
        assert process.stdout is not None
        port = await asyncio.wait_for(_listening_port(process.stdout), 30)
        # Keep reading its log, or a full pipe would block the process.
        drain = asyncio.ensure_future(process.stdout.read())
        yield Running(process, f"127.0.0.1:{port}", (("authorization", f"Bearer {admin}"),))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if drain is not None:
            await drain


async def _listening_port(stdout: asyncio.StreamReader) -> int:
    """The port from the "listening on ... (port N)" line (after JSON log lines)."""
    while line := (await stdout.readline()).decode():
        found = re.search(r"listening on \S+ \(port (\d+)\)", line)
        if found:
            return int(found.group(1))
    raise AssertionError("config_svc exited before it listened")


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[Running]:
    async for served in _start(database_url, grace_seconds=8):
        yield served


async def _settings_table_locked(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    await conn.execute("BEGIN")
    await conn.execute("LOCK TABLE settings IN ACCESS EXCLUSIVE MODE")
    return conn


async def _until_waiting_on_lock(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND query LIKE '%FROM settings%'"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the call never reached the database")
    finally:
        await conn.close()


async def test_sigterm_drains_in_flight_calls_and_exits_zero(running: Running, database_url: str) -> None:
    channel = grpc.aio.insecure_channel(running.address)
    try:
        stub = config_service_pb2_grpc.ConfigServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await health.read()).status == SERVING
        watch = stub.WatchConfig(cs.WatchConfigRequest(), metadata=running.admin)
        assert (await watch.read()).HasField("snapshot")

        lock = await _settings_table_locked(database_url)
        in_flight = asyncio.ensure_future(stub.GetSettings(cs.GetSettingsRequest(), metadata=running.admin,
                                                           timeout=20))
        await _until_waiting_on_lock(database_url)

        running.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert (await asyncio.wait_for(health.read(), 5)).status == NOT_SERVING

        # The watch stream ends cleanly: no more events, status OK.
        assert await asyncio.wait_for(watch.read(), 5) is grpc.aio.EOF
        assert await watch.code() == grpc.StatusCode.OK
        assert not in_flight.done()

        await asyncio.sleep(0.5)  # still draining: the held call has not been cut off
        await lock.execute("ROLLBACK")
        await lock.close()
        assert (await asyncio.wait_for(in_flight, 5)).etag

        assert await asyncio.wait_for(running.process.wait(), 8) == 0
        assert time.monotonic() - started < 8
    finally:
        await channel.close(None)


async def test_calls_slower_than_the_grace_period_are_cut_off(database_url: str) -> None:
    async for running in _start(database_url, grace_seconds=1):
        channel = grpc.aio.insecure_channel(running.address)
        lock = await _settings_table_locked(database_url)
        try:
            stub = config_service_pb2_grpc.ConfigServiceStub(channel)
            in_flight = asyncio.ensure_future(stub.GetSettings(cs.GetSettingsRequest(), metadata=running.admin,
                                                               timeout=20))
            await _until_waiting_on_lock(database_url)
            running.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert await asyncio.wait_for(running.process.wait(), 10) == 0
            assert time.monotonic() - started < 5
            with pytest.raises(grpc.aio.AioRpcError):
                await in_flight
        finally:
            await lock.close()
            await channel.close(None)
