"""Ledger delivery across failures: every chat is recorded exactly once
when config_svc is killed and restarted during a chat load, and when a
resolver (a real process) is stopped with SIGTERM while chats are in flight;
a full buffer drops its oldest records and counts them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from modelplane_server.config_svc.server import ConfigServer, build_server
from modelplane_server.domain.types import CredentialSource, Role
from modelplane_server.domain.usage import Outcome, Tokens, UsageRecord
from modelplane_server.resolver_svc.state.config_client import ConfigClient
from modelplane_server.resolver_svc.usage.ledger import UsageLedger
from modelplane.v1 import config_service_pb2_grpc
from modelplane.v1 import resolver_service_pb2_grpc as rs_grpc
from tests.e2e.governed import (ask, caught_up, governed_resolver, local_model, records, stream_all,
                                wait_until_sent)
from tests.fakes import Canned, FakeUpstream
from tests.harness import ConfigHarness, Metadata, config_settings
from tests.resolver_harness import free_port

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def config_on(database_url: str, port: int) -> AsyncIterator[ConfigHarness]:
    """config_svc on a fixed port (so it can come back where resolvers look for it)."""
    server: ConfigServer = await build_server(config_settings(database_url, listen=f"127.0.0.1:{port}"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        harness = ConfigHarness(server, channel, config_service_pb2_grpc.ConfigServiceStub(channel), ())
        harness.admin = await harness.md(Role.ADMIN, "root-admin")
        yield harness
    finally:
        await channel.close()
        await server.stop(0)


async def test_exactly_once_when_config_svc_is_killed_and_restarted_during_a_chat_load(database_url: str) -> None:
    port = free_port()
    workers, per_worker = 6, 16
    done: list[str] = []
    failed: list[str] = []
    async with FakeUpstream.start("openai-compatible") as fake:
        fake.default = Canned(chunk_chars=4, delay_s=0.01)
        first = config_on(database_url, port)
        cfg = await first.__aenter__()
        alive = True
        try:
            service_token = await cfg.token(Role.SERVICE, "resolver")
            alice = await cfg.md(Role.MEMBER, "alice")
            await local_model(cfg, fake)
            async with governed_resolver(cfg, service_token) as r:
                await caught_up(cfg, r)
                await r.stub.Chat(ask(chat_id="warm-up"), metadata=alice)  # caches alice's token and the key

                async def worker(w: int) -> None:
                    for i in range(per_worker):
                        chat_id = f"w{w}-{i}"
                        try:
                            if i % 2:
                                await stream_all(r.stub, ask(chat_id=chat_id), alice)
                            else:
                                await r.stub.Chat(ask(chat_id=chat_id), metadata=alice)
                            done.append(chat_id)
                        except grpc.aio.AioRpcError as err:
                            failed.append(f"{chat_id}: {err.code().name} {err.details()}")

                load = asyncio.gather(*(worker(w) for w in range(workers)))
                while len(done) < workers * per_worker // 3:
                    await asyncio.sleep(0.01)
                await first.__aexit__(None, None, None)  # config_svc goes away mid-load
                alive = False
                await asyncio.sleep(1.0)
                async with config_on(database_url, port) as again:
                    await load
                    await wait_until_sent(r.server, timeout=20)
                    assert r.server.ledger is not None
                    registry = r.server.ledger.metrics.registry
                    assert registry is not None
                    stored = await records(again)
        finally:
            if alive:
                await first.__aexit__(None, None, None)
    assert failed == []  # resolvers keep chatting from their caches while config_svc is away
    assert len(done) == workers * per_worker
    chats = [row["chat_id"] for row in stored]
    assert sorted(chats) == sorted(["warm-up", *done])  # each chat once: none lost, none twice
    assert (registry.get_sample_value("modelplane_usage_send_failures_total") or 0) > 0, \
        "the outage never hit the ledger; the test proves nothing"


async def test_exactly_once_after_a_resolver_sigterm(cfg: ConfigHarness) -> None:
    """A real resolver process that holds every record in its buffer (a long
    flush interval) is sent SIGTERM while streams are in flight: the streams
    finish, and every record reaches Postgres before the process exits."""
    alice = await cfg.md(Role.MEMBER, "alice")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({
        "CONFIG_SVC_ADDRESS": cfg.address, "RESOLVER_SERVICE_TOKEN": await cfg.token(Role.SERVICE, "resolver"),
        "RESOLVER_SVC_LISTEN": f"127.0.0.1:{port}", "RESOLVER_SVC_METRICS_LISTEN": "off",
        "RESOLVER_AMBIENT_AWS": "false", "RESOLVER_LEDGER_FLUSH_INTERVAL_SECONDS": "600",
        "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS": "15", "LOG_LEVEL": "WARNING"})
    async with FakeUpstream.start("openai-compatible") as fake:
        await local_model(cfg, fake)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelplane_server.resolver_svc", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = rs_grpc.ResolverServiceStub(channel)
            await _until_serving(channel)
            for i in range(5):
                await stub.Chat(ask(chat_id=f"before-{i}"), metadata=alice)
            fake.default = Canned(text="a slow answer " * 4, chunk_chars=4, delay_s=0.1)
            streams = [asyncio.ensure_future(_finished(stub, f"inflight-{i}", alice)) for i in range(3)]
            while len(fake.requests) < 8:  # the three streams reached the upstream
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # and are under way (each takes about two seconds)
            assert await records(cfg) == []  # everything is still in the resolver's buffer
            process.send_signal(signal.SIGTERM)
            finished = await asyncio.gather(*streams)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            await channel.close()
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert all(finished)
    stored = await records(cfg)
    assert sorted(r["chat_id"] for r in stored) == sorted(
        [f"before-{i}" for i in range(5)] + [f"inflight-{i}" for i in range(3)])
    assert {r["outcome"] for r in stored} == {"finished"}


async def _until_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(300):
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the resolver never served")


async def _finished(stub: rs_grpc.ResolverServiceStub, chat_id: str, md: Metadata) -> bool:
    events = await stream_all(stub, ask(chat_id=chat_id), md)
    return events[-1].HasField("finish")


def _record(i: int) -> UsageRecord:
    now = dt.datetime.now(dt.timezone.utc)
    return UsageRecord(id=f"overflow-{i}", user="alice", provider="local", model="gpt",
                       credential_source=CredentialSource.CENTRAL_KEY, tokens=Tokens(1, 0, 0, 1, 0),
                       cost_micro_usd=18, outcome=Outcome.FINISHED, end_time=now)


async def test_a_full_buffer_drops_the_oldest_and_counts_them(database_url: str) -> None:
    port = free_port()
    registry = CollectorRegistry()
    async with config_on(database_url, free_port()) as minting:
        token = await minting.token(Role.SERVICE, "resolver")
    client = ConfigClient(f"127.0.0.1:{port}", token, timeout_seconds=1.0, reconnect_initial_seconds=0.05,
                          reconnect_max_seconds=0.2)
    ledger = UsageLedger(client.record_usage, max_records=5, batch_size=2, interval=0.05, retry_initial=0.05,
                         retry_max=0.2, registry=registry)
    try:
        ledger.start()
        for i in range(8):
            ledger.add(_record(i))
        assert len(ledger) == 5
        assert registry.get_sample_value("modelplane_usage_records_total", {"outcome": "dropped"}) == 3
        await asyncio.sleep(0.3)  # config_svc is not there: nothing leaves, nothing more is lost
        assert len(ledger) == 5
        async with config_on(database_url, port) as cfg:
            for _ in range(200):
                if not len(ledger):
                    break
                await asyncio.sleep(0.05)
            stored = sorted(r["id"] for r in await records(cfg))
        assert stored == [f"overflow-{i}" for i in range(3, 8)]
        assert registry.get_sample_value("modelplane_usage_records_total", {"outcome": "sent"}) == 5
        assert (registry.get_sample_value("modelplane_usage_send_failures_total") or 0) > 0
    finally:
        assert await ledger.drain(0) == 0
        await client.close()


async def test_the_ledger_rides_out_a_postgres_outage(cfg: ConfigHarness, database_url: str,
                                                      pg_server_dsn: str) -> None:
    """config_svc stays up but its database goes away: chats go on from the
    resolver's caches, their records wait in its buffer, and all arrive once
    Postgres is back."""
    alice = await cfg.md(Role.MEMBER, "alice")
    name = urlsplit(database_url).path.lstrip("/")
    async with FakeUpstream.start("openai-compatible") as fake, governed_resolver(cfg) as r:
        await local_model(cfg, fake)
        await caught_up(cfg, r)
        await r.stub.Chat(ask(chat_id="before"), metadata=alice)
        await wait_until_sent(r.server)
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            for i in range(5):
                await r.stub.Chat(ask(chat_id=f"outage-{i}"), metadata=alice)
            assert r.server.ledger is not None and r.server.ledger.metrics.registry is not None
            registry = r.server.ledger.metrics.registry
            while not registry.get_sample_value("modelplane_usage_send_failures_total"):
                await asyncio.sleep(0.05)
            assert len(r.server.ledger) == 5  # held, not lost
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
        await wait_until_sent(r.server, timeout=30)
    stored = sorted(row["chat_id"] for row in await records(cfg))
    assert stored == ["before", *(f"outage-{i}" for i in range(5))]
