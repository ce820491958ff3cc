"""build_server(): wires pool, keyring, store, watch broadcaster, health,
reflection, TLS and metrics into one grpc.aio server. Nothing happens at
import time.

Interceptors, outer to inner: metrics (so refused calls are counted too),
request context/log line, authentication, error mapping, the drain hook
that ends WatchConfig streams on shutdown (see modelplane_server.runtime.shutdown),
and the revision stamp on every answer (config_svc.revision_stamp).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import grpc
import structlog
from prometheus_client import CollectorRegistry

from modelplane_server.config_svc import db
from modelplane_server.config_svc.revision_stamp import RevisionStamp
from modelplane_server.config_svc.service.providers import BaseUrlPolicy
from modelplane_server.config_svc.service.resolvers import ResolverMap
from modelplane_server.config_svc.service.spend_feed import SpendFeed
from modelplane_server.config_svc.service.tokens import authenticate
from modelplane_server.config_svc.service.watch import Broadcaster
from modelplane_server.config_svc.servicer import ConfigServicer
from modelplane_server.config_svc.settings import ConfigServiceSettings
from modelplane_server.config_svc.store import Store
from modelplane_server.runtime import consistency_metrics, crypto, metrics, shutdown, tls
from modelplane_server.runtime.health import Health, add_health_and_reflection
from modelplane_server.runtime.interceptors import server_interceptors
from modelplane_server.domain.resolver_map import ResolverRecord
from modelplane_server.runtime.tracing import Tracing
from modelplane_server.runtime.request_gate import server_options
from modelplane_server.domain.bounds import MAX_REQUEST_BYTES
from modelplane_server.domain.types import Principal
from modelplane_server.domain.errors import DomainError
from modelplane.v1 import config_service_pb2, config_service_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = config_service_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name
WATCH_CONFIG = f"/{SERVICE_NAME}/WatchConfig"


class KeyringMismatch(Exception):
    """Stored ciphertexts need keys the configured keyring lacks."""


@dataclass
class ConfigServer:
    server: grpc.aio.Server
    port: int
    store: Store
    health: Health
    registry: CollectorRegistry
    metrics_endpoint: metrics.MetricsEndpoint | None
    _streams: shutdown.EndlessStreams
    _tasks: list[asyncio.Task[None]]
    _broadcaster: Broadcaster
    resolver_map: ResolverMap
    spend: SpendFeed
    tracing: Tracing | None = None

    async def stop(self, grace: float | None = 5.0) -> None:
        """Graceful: NOT_SERVING, end watch streams, let in-flight calls finish
        within `grace` seconds, then close the listener, pool and metrics."""
        for task in self._tasks:  # the database health loop must not flip health back
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await shutdown.graceful_stop(self.server, self.health, self._streams, grace)
        await self.resolver_map.close()
        await self._broadcaster.stop()
        await self.spend.stop()
        await self.store.pool.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.tracing is not None:
            await self.tracing.shutdown()  # exports what is still buffered


async def build_server(settings: ConfigServiceSettings, *, migrate: bool = True) -> ConfigServer:
    keyring = crypto.Keyring.parse(settings.encryption_keys)
    pool = await db.create_pool(settings.database_url, max_size=settings.db_pool_size)
    try:
        if migrate:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        store = Store(pool, keyring)
        missing = keyring.missing_key_ids(await store.stored_key_ids())
        if missing:
            raise KeyringMismatch(crypto.missing_key_message(missing))
    except BaseException:
        await pool.close()
        raise
    broadcaster = Broadcaster(settings.database_url, heartbeat_seconds=settings.watch_heartbeat_seconds)
    await broadcaster.start(store)
    spend = SpendFeed(settings.database_url)
    await spend.start(store)

    async def auth(bearer: str) -> Principal:
        return await authenticate(store, bearer)

    registry = CollectorRegistry()
    metrics.watch_pool(registry, pool)
    streams = shutdown.EndlessStreams([WATCH_CONFIG, shutdown.HEALTH_WATCH])
    tracing = Tracing(settings.tracing) if settings.tracing is not None else None
    # Tracing outermost: every other stage (and the request's log line) runs inside the RPC's span.
    spans = [tracing.stage()] if tracing is not None else []
    server = grpc.aio.server(interceptors=server_interceptors(
        auth, outer=[*spans, metrics.RpcMetricsInterceptor(registry)], inner=[streams, RevisionStamp(store, SERVICE_NAME)]),
        options=[*keepalive_options(settings.keepalive_min_ping_interval_seconds, settings.keepalive_seconds,
                                    settings.keepalive_timeout_seconds),
                 *server_options(MAX_REQUEST_BYTES["config_svc"])])
    resolver_map = ResolverMap(store, replica="", expiry_seconds=settings.resolver_expiry_seconds)

    def map_for_metrics() -> tuple[list[ResolverRecord], int, str] | None:
        latest = resolver_map.latest
        return None if latest is None else (latest.records, latest.revision, latest.epoch)

    consistency_metrics.watch_resolver_map(registry, map_for_metrics)
    config_service_pb2_grpc.add_ConfigServiceServicer_to_server(
        ConfigServicer(store, broadcaster, base_urls=BaseUrlPolicy(settings.own_addresses,
                                                                   settings.allow_metadata_addresses),
                       aws_region=settings.aws_region, resolver_map=resolver_map, spend=spend),
        server)
    health = add_health_and_reflection(server, [SERVICE_NAME])
    try:
        port = tls.add_port(server, settings.listen, settings.tls)
        # This replica in the live map of resolvers: the host and the bound port.
        resolver_map.replica = f"{socket.gethostname()}:{port}"
        await server.start()
        endpoint = metrics.serve(settings.metrics_listen, registry)
    except BaseException:
        await server.stop(None)
        await broadcaster.stop()
        await spend.stop()
        await pool.close()
        raise
    await health.set_serving(True)
    tasks = [asyncio.create_task(_watch_database(store, health), name="db-health"),
             asyncio.create_task(resolver_map.run(), name="resolver-map")]
    log.info("config_svc serving", address=settings.listen, port=port,
             tls="mutual" if settings.tls and settings.tls.mutual else bool(settings.tls),
             metrics=f"{endpoint.host}:{endpoint.port}" if endpoint else "off")
    return ConfigServer(server, port, store, health, registry, endpoint, streams, tasks, broadcaster, resolver_map,
                        spend, tracing)


def keepalive_options(min_ping_interval_seconds: float, keepalive_seconds: float = 10.0,
                      keepalive_timeout_seconds: float = 5.0) -> list[tuple[str, int]]:
    """Accept the keepalive pings resolvers send on their quiet watch streams
    (resolver_svc.state.config_client.channel_options). gRPC's server defaults
    allow one ping without data per 5 minutes and none without a call, and
    answer more with GOAWAY too_many_pings, which would cut every watch.

    And ping the clients: a resolver gone without closing its connection
    (its host died, the network was cut) would otherwise keep its watch
    stream open here for as long as TCP takes to notice, hours, and be shown
    watching in the live map. As on the resolver's side, the ping timeout is
    what gRPC core enforces (grpc/grpc#39239), so both are set."""
    timeout = max(1, int(keepalive_timeout_seconds * 1000))
    return [
        ("grpc.http2.min_ping_interval_without_data_ms", max(1, int(min_ping_interval_seconds * 1000))),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", max(1, int(keepalive_seconds * 1000))),
        ("grpc.keepalive_timeout_ms", timeout),
        ("grpc.http2.ping_timeout_ms", timeout),
        ("grpc.http2.max_pings_without_data", 0),
    ]


async def _watch_database(store: Store, health: Health, interval: float = 2.0, confirm_after: float = 0.5) -> None:
    """Health follows the database: NOT_SERVING while Postgres is unreachable.

    A failed ping turns health only when a second one, `confirm_after`
    seconds later, fails too. Under load a ping can spend its whole interval
    waiting for a pool connection: the database is busy then, not gone, and
    a load balancer that dropped the replica would move its load onto the
    others. A database that is gone fails both (found within about
    interval + confirm_after, plus the pings' own time)."""
    serving = True
    while True:
        await asyncio.sleep(interval)
        ok = await _ping(store, interval)
        if not ok and serving:
            await asyncio.sleep(confirm_after)
            ok = await _ping(store, interval)
        if ok != serving:
            serving = ok
            await health.set_serving(ok)
            log.warning("database reachability changed", serving=ok)


async def _ping(store: Store, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):  # not wait_for: a cancellation is never lost (3.11)
            await store.ping()
        return True
    except (DomainError, TimeoutError):
        return False
    except Exception as exc:  # e.g. the database was dropped: report it, never end the loop
        log.warning("database health check failed", error_type=type(exc).__name__)
        return False
