"""A config_svc that stops answering without closing its connection (hung,
frozen, a half-open TCP connection) is noticed by the resolver's HTTP/2
keepalive: the watch fails, the snapshot lag rises, health stays SERVING
(static stability), and the watch catches up once config_svc answers again.
config_svc accepts the pings (no GOAWAY too_many_pings cutting the watch).
Where keepalive cannot tell (a gRPC proxy in between answers the pings),
config_svc's heartbeat on quiet watch streams can: a silent stream is given
up after RESOLVER_CONFIG_WATCH_IDLE_SECONDS.

The frozen config_svc is a real `python -m modelplane_server.config_svc serve` subprocess
stopped with SIGSTOP; changes meanwhile go through a second, in-process
replica on the same database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from typing import AsyncIterator

import pytest

from modelplane_server.config_svc.server import build_server as build_config_server
from modelplane_server.config_svc.settings import ConfigServiceSettings as ConfigSettings
from modelplane_server.domain.types import Role
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.resolver_svc.server import ResolverServer
from modelplane_server.resolver_svc.settings import ResolverSettings
from tests.harness import ConfigHarness, config_settings, keyring_env, start_config
from tests.resolver_harness import eventually, free_port, start_resolver

pytestmark = pytest.mark.e2e

config_running = contextlib.asynccontextmanager(start_config)
resolver_running = contextlib.asynccontextmanager(start_resolver)

# Short, so a frozen config_svc is noticed within about a second.
FAST_KEEPALIVE = {"config_keepalive_seconds": 0.3, "config_keepalive_timeout_seconds": 0.5}


@contextlib.asynccontextmanager
async def config_subprocess(database_url: str, keys: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`python -m modelplane_server.config_svc serve` on a free port; (process, address)."""
    env = {**os.environ, "DATABASE_URL": database_url, "MODELPLANE_ENCRYPTION_KEYS": keys,
           "CONFIG_SVC_LISTEN": "127.0.0.1:0", "CONFIG_SVC_METRICS_LISTEN": "off", "LOG_LEVEL": "WARNING",
           "CONFIG_SVC_KEEPALIVE_MIN_PING_INTERVAL_SECONDS": "0.1"}
    with tempfile.TemporaryFile() as stderr:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelplane_server.config_svc", "serve", env=env,
                                                       stdout=asyncio.subprocess.PIPE, stderr=stderr)
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            found = re.search(r"\(port (\d+)\)", line)
            if found is None:
                stderr.seek(0)
                raise AssertionError(f"config_svc did not start: {line!r} {stderr.read().decode()[-2000:]}")
            yield process, f"127.0.0.1:{found.group(1)}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def snapshot_lag(server: ResolverServer) -> float:
    """modelplane_snapshot_lag_seconds as a scrape reads it."""
    return float(server.resolver_metrics.snapshot_lag.collect()[0].samples[0].value)


async def create_provider(cfg: ConfigHarness, name: str) -> None:
    await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name=name, type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-test")), metadata=cfg.admin)


async def test_a_frozen_config_svc_is_noticed_and_the_watch_catches_up_after(database_url: str) -> None:
    keys = keyring_env("k1")
    async with config_running(config_settings(database_url, keys)) as replica, \
            config_subprocess(database_url, keys) as (process, address):
        await create_provider(replica, "before")
        async with resolver_running(address, await replica.token(Role.SERVICE, "resolver"),
                                    **FAST_KEEPALIVE) as resolver:
            server = resolver.server

            async def has(name: str) -> None:
                assert server.watcher.connected and snapshot_lag(server) == 0
                assert name in server.snapshot.current().state.providers

            await eventually(lambda: has("before"))
            process.send_signal(signal.SIGSTOP)
            try:
                await create_provider(replica, "during")  # the frozen config_svc cannot pass it on

                async def watch_lost() -> None:
                    assert not server.watcher.connected
                    assert snapshot_lag(server) > 0

                await eventually(watch_lost, timeout=10, interval=0.1)
                # Static stability: still serving the last snapshot.
                assert await resolver.serving()
                assert "before" in server.snapshot.current().state.providers
                assert "during" not in server.snapshot.current().state.providers
            finally:
                process.send_signal(signal.SIGCONT)
            await eventually(lambda: has("during"), timeout=20, interval=0.1)
            assert server.snapshot.revision == await replica.server.store.current_revision()


async def test_config_svc_accepts_the_resolvers_keepalive_pings(database_url: str) -> None:
    """Pings (gRPC sends them at most once a second) for a few seconds on a
    quiet watch: one stream, never cut by GOAWAY too_many_pings. gRPC's
    server default allows one ping per 5 minutes and sends that GOAWAY at
    the third ping too many, about 3 s in."""
    settings = config_settings(database_url, keepalive_min_ping_interval_seconds=0.1)
    async with config_running(settings) as cfg:
        async with resolver_running(cfg.address, await cfg.token(Role.SERVICE, "resolver"),
                                    **FAST_KEEPALIVE) as resolver:
            await asyncio.sleep(5)
            assert resolver.server.watcher.connected
            assert resolver.server.watcher.streams_opened == 1


def test_the_default_keepalive_intervals_fit_together() -> None:
    """A resolver with default settings pings no more often than a config_svc
    with default settings accepts."""
    assert ConfigSettings.keepalive_min_ping_interval_seconds <= ResolverSettings.config_keepalive_seconds


async def test_a_quiet_watch_is_kept_by_heartbeats_and_a_silent_one_is_given_up(database_url: str) -> None:
    """Keepalive cannot see a config_svc that is hung behind a gRPC proxy (the
    proxy answers pings); config_svc's heartbeat can: silence for
    RESOLVER_CONFIG_WATCH_IDLE_SECONDS means the watch is lost."""
    async with config_running(config_settings(database_url, watch_heartbeat_seconds=0.2)) as cfg:
        token = await cfg.token(Role.SERVICE, "resolver")
        async with resolver_running(cfg.address, token, config_watch_idle_seconds=1.0) as resolver:
            await asyncio.sleep(2.5)  # quiet, but heartbeats arrive
            assert resolver.server.watcher.connected and resolver.server.watcher.streams_opened == 1
            assert snapshot_lag(resolver.server) == 0
    # A config_svc that says nothing (as a hung one behind a proxy would).
    async with config_running(config_settings(database_url, watch_heartbeat_seconds=60)) as cfg:
        token = await cfg.token(Role.SERVICE, "resolver")
        async with resolver_running(cfg.address, token, config_watch_idle_seconds=0.5) as resolver:
            server = resolver.server

            async def given_up() -> None:
                assert server.watcher.streams_opened > 1
                assert not server.watcher.connected and snapshot_lag(server) > 0

            await eventually(given_up, timeout=5, interval=0.05)
            assert await resolver.serving()


async def test_a_resumed_watch_that_missed_nothing_is_connected_at_once(database_url: str) -> None:
    """After config_svc restarts with no change meanwhile, the resumed watch
    has nothing to send; config_svc says "you are current" at once, so the
    snapshot lag goes back to 0 without waiting for a write (or heartbeat)."""
    settings = config_settings(database_url, listen=f"127.0.0.1:{free_port()}", watch_heartbeat_seconds=60)
    async with contextlib.AsyncExitStack() as stack:
        async with config_running(settings) as cfg:
            token = await cfg.token(Role.SERVICE, "resolver")
            resolver = await stack.enter_async_context(resolver_running(cfg.address, token))
            await eventually(lambda: _connected(resolver.server, True))
        await eventually(lambda: _connected(resolver.server, False))
        revision = resolver.server.snapshot.revision
        restarted = await build_config_server(settings)  # not the harness: it writes an admin token
        try:
            await eventually(lambda: _connected(resolver.server, True), timeout=10)
            assert resolver.server.watcher.streams_opened > 1
            assert await restarted.store.current_revision() == revision == resolver.server.snapshot.revision
        finally:
            await restarted.stop(0)


async def _connected(server: ResolverServer, expected: bool) -> None:
    assert server.watcher.connected is expected
    if expected:
        assert snapshot_lag(server) == 0
